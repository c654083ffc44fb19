// Package smtpsink is an in-process SMTP server for the demo, tests and
// benchmarks. It accepts every mail unless told to refuse some, can fail
// a share of attempts temporarily, drop connections on demand, and either
// keeps what it received or only counts it.
package smtpsink

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"net"
	"net/mail"
	"sync"

	"github.com/emersion/go-smtp"
)

// Options configure a Sink. The zero value accepts and keeps every mail.
type Options struct {
	// Discard counts mails without keeping them, for benchmarks.
	Discard bool

	// Reject, if set, answers each RCPT TO first; attempt counts the RCPT
	// commands for that address so far, from 1. Returning nil passes the
	// address on to PermFail and TempFailRate.
	Reject func(rcpt string, attempt int) *smtp.SMTPError
	// PermFail addresses are refused at RCPT with 550 5.1.1.
	PermFail map[string]bool
	// TempFailRate is the share of RCPT attempts refused with 451 4.3.0.
	// Which attempts fail depends only on Seed, the address and the attempt
	// number, so that runs repeat whatever the order of connections.
	TempFailRate float64
	Seed         uint64

	// RejectData, if set, answers the end of DATA; nil accepts the mail.
	RejectData func(from string, to []string) *smtp.SMTPError
	// Drop, if set, is asked at each RCPT TO; true closes the connection
	// without a reply, as a crashed or overloaded server would.
	Drop func(rcpt string, attempt int) bool
	// DropAfterData, if set, is asked for each accepted mail; true closes
	// the connection right after the 250 reply to DATA, so that the
	// client's next command (go-mail's RSET) fails for a delivered mail.
	DropAfterData func(from string, to []string) bool
}

// Message is one accepted mail.
type Message struct {
	From   string
	To     []string
	Data   []byte
	Header mail.Header
}

// Sink is a running SMTP server on 127.0.0.1.
type Sink struct {
	opts   Options
	server *smtp.Server
	ln     net.Listener
	served chan struct{}

	closeOnce sync.Once
	closeErr  error

	mu          sync.Mutex
	messages    []Message
	count       int
	attempts    int
	connections int
	perRcpt     map[string]int
	open        map[net.Conn]struct{}
	waiters     []waiter
}

type waiter struct {
	n  int
	ch chan struct{}
}

// Start listens on 127.0.0.1 on a free port and serves until Close or
// until ctx ends.
func Start(ctx context.Context, opts Options) (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &Sink{
		opts:    opts,
		ln:      ln,
		served:  make(chan struct{}),
		perRcpt: make(map[string]int),
		open:    make(map[net.Conn]struct{}),
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "smtpsink.localhost"
	srv.AllowInsecureAuth = true
	// Dropped connections are part of the job; their log lines are noise.
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.server = srv
	go func() {
		defer close(s.served)
		srv.Serve(ln)
	}()
	context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// Addr returns host:port.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// URL returns the sink as an smtp URL without TLS.
func (s *Sink) URL() string { return "smtp://" + s.Addr() + "?tls=none" }

// Close stops the server and closes every connection. It may be called
// more than once.
func (s *Sink) Close() error {
	// go-smtp's Server.Close panics when two calls race, as a Close and the
	// end of the context given to Start may.
	s.closeOnce.Do(func() {
		s.closeErr = s.server.Close()
		// Serve registers the listener with the server only once it runs;
		// a Close before that would leave Accept waiting.
		s.ln.Close()
		<-s.served
	})
	return s.closeErr
}

// Messages returns a copy of the mails accepted so far; empty with Discard.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Count returns the number of mails accepted.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Attempts returns the number of RCPT TO commands received, refused or not.
func (s *Sink) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Connections returns the number of SMTP sessions opened (counted at EHLO).
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// OpenSessions returns the number of connections not yet closed. A mail
// whose data reached the sink before its client died is counted by the
// time its session has ended, so a test that kills a client waits for 0
// before it reads Count.
func (s *Sink) OpenSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// DropConnections closes every open connection from the server side without
// a reply, and returns how many it closed.
func (s *Sink) DropConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.open {
		c.Close()
	}
	n := len(s.open)
	clear(s.open)
	return n
}

// WaitFor blocks until at least n mails were accepted or ctx ends.
func (s *Sink) WaitFor(ctx context.Context, n int) error {
	s.mu.Lock()
	if s.count >= n {
		s.mu.Unlock()
		return nil
	}
	w := waiter{n: n, ch: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %d mails, have %d: %w", n, s.Count(), ctx.Err())
	}
}

// Reset forgets the mails and clears every counter. Waiters stay and count
// from zero.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = nil
	s.count, s.attempts, s.connections = 0, 0, 0
	clear(s.perRcpt)
}

func (s *Sink) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connections++
	s.open[c.Conn()] = struct{}{}
	return &session{sink: s, conn: c.Conn()}, nil
}

// rcpt decides the answer to one RCPT TO; drop means close the connection.
func (s *Sink) rcpt(to string) (reply *smtp.SMTPError, drop bool) {
	s.mu.Lock()
	s.attempts++
	s.perRcpt[to]++
	attempt := s.perRcpt[to]
	s.mu.Unlock()

	if s.opts.Drop != nil && s.opts.Drop(to, attempt) {
		return nil, true
	}
	if s.opts.Reject != nil {
		if reply := s.opts.Reject(to, attempt); reply != nil {
			return reply, false
		}
	}
	if s.opts.PermFail[to] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}, false
	}
	if s.opts.TempFailRate > 0 && s.fraction(to, attempt) < s.opts.TempFailRate {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}, false
	}
	return nil, false
}

// fraction maps (Seed, address, attempt) to [0, 1).
func (s *Sink) fraction(to string, attempt int) float64 {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], s.opts.Seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(attempt))
	h.Write(b[:])
	h.Write([]byte(to))
	return float64(h.Sum64()>>11) / (1 << 53)
}

func (s *Sink) accept(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	if !s.opts.Discard {
		s.messages = append(s.messages, m)
	}
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if s.count >= w.n {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	s.waiters = kept
}

type session struct {
	sink *Sink
	conn net.Conn
	from string
	to   []string
	// dropOnReset closes the connection at the next Reset, which go-smtp
	// calls after it has written the reply to DATA.
	dropOnReset bool
}

func (ss *session) Reset() {
	ss.from = ""
	ss.to = ss.to[:0]
	if ss.dropOnReset {
		ss.dropOnReset = false
		ss.conn.Close()
	}
}

func (ss *session) Logout() error {
	ss.sink.mu.Lock()
	delete(ss.sink.open, ss.conn)
	ss.sink.mu.Unlock()
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	reply, drop := ss.sink.rcpt(to)
	if drop {
		ss.conn.Close()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "dropped"}
	}
	if reply != nil {
		return reply
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var m Message
	if ss.sink.opts.Discard {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
	} else {
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		m = Message{From: ss.from, To: append([]string(nil), ss.to...), Data: data}
		if msg, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
			m.Header = msg.Header
		}
	}
	if ss.sink.opts.RejectData != nil {
		if err := ss.sink.opts.RejectData(ss.from, ss.to); err != nil {
			return err
		}
	}
	ss.sink.accept(m)
	if ss.sink.opts.DropAfterData != nil && ss.sink.opts.DropAfterData(ss.from, ss.to) {
		ss.dropOnReset = true
	}
	return nil
}
