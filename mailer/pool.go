package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// ErrPoolClosed is returned by Send after Close.
var ErrPoolClosed = errors.New("mailer: pool closed")

// Pool sends mails over up to size long-lived SMTP connections, dialled on
// first use and reused across messages. A connection that fails at the
// connection level is closed, and the next Send on its slot dials anew.
// Pool is safe for concurrent use; Send blocks while all connections are busy.
//
// go-mail's Client.Send serialises on one connection, so the pool keeps
// one smtp.Client per slot, dialled with the shared go-mail Client's
// settings (DialToSMTPClientWithContext: TLS, EHLO, AUTH), and runs the
// mail transactions on it itself (transaction.go).
type Pool struct {
	cfg    Config
	client *gomail.Client
	dkim   *dkimSigner // nil without DKIM
	err    error       // a configuration error, returned by every Send

	// slots holds one entry per connection the pool may open: nil for a
	// slot not dialled yet or dropped, else an idle connection.
	slots     chan *conn
	buffers   sync.Pool // of *bytes.Buffer, see transact
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type conn struct {
	smtp     *smtp.Client
	net      net.Conn // beneath any TLS, to interrupt I/O when ctx ends
	session  session  // what the server's EHLO offered
	lastUsed time.Time
}

// connKey carries, through go-mail's dialling, where the pool's dialer
// stores the net.Conn it opened.
type connKey struct{}

// NewPool returns a pool of at most size connections (at least one). A
// configuration error is returned by every Send, so that a caller that
// validated cfg need not handle it twice.
func NewPool(cfg Config, size int) *Pool {
	size = max(size, 1)
	p := &Pool{cfg: cfg, slots: make(chan *conn, size), done: make(chan struct{})}
	for range size {
		p.slots <- nil
	}
	if err := cfg.Validate(); err != nil {
		p.err = err
		return p
	}
	var err error
	if cfg.DKIMKey != nil {
		if p.dkim, err = newDKIMSigner(cfg.DKIMDomain, cfg.DKIMSelector, cfg.DKIMKey); err != nil {
			p.err = err
			return p
		}
	}
	p.client, err = gomail.NewClient(cfg.Host, cfg.clientOptions(p.dialNet)...)
	if err != nil {
		p.err = fmt.Errorf("smtp client for %s: %w", cfg, err)
	}
	return p
}

// BounceDomain is the domain of the per-recipient Return-Path, "" without
// VERP.
func (p *Pool) BounceDomain() string { return p.cfg.BounceDomain }

// Send delivers m on a pooled connection. It returns nil once the server
// has accepted the mail; nothing follows on the connection before the next
// mail (no RSET), so an accepted mail is never reported as failed. A mail
// fails without being retried here except in one case: when a reused
// connection turns out dead at MAIL FROM (no reply, or 421), the pool
// redials and tries once more. Classify tells what to do with any other
// error.
func (p *Pool) Send(ctx context.Context, m *gomail.Msg) error {
	if p.err != nil {
		return p.err
	}
	w, err := WireOf(m)
	if err != nil {
		return err
	}
	return p.SendWire(ctx, w)
}

// SendWire is Send for a mail already rendered (BuildWire, WireOf).
func (p *Pool) SendWire(ctx context.Context, w *Wire) error {
	if p.err != nil {
		return p.err
	}
	if p.dkim != nil {
		// Signing costs CPU, not a connection: done before taking a slot.
		data, err := p.dkim.sign(w.Data)
		if err != nil {
			return err
		}
		w = &Wire{From: w.From, To: w.To, Data: data}
	}
	var c *conn
	select {
	case <-p.done:
		return ErrPoolClosed
	case <-ctx.Done():
		return ctx.Err()
	case c = <-p.slots:
	}
	select {
	case <-p.done:
		p.slots <- c
		return ErrPoolClosed
	default:
	}
	c, err := p.send(ctx, c, w)
	p.slots <- c
	return err
}

// send returns the connection to keep in the slot, nil if there is none.
func (p *Pool) send(ctx context.Context, c *conn, w *Wire) (*conn, error) {
	if c != nil && p.cfg.idleTimeout() > 0 && time.Since(c.lastUsed) > p.cfg.idleTimeout() {
		// Servers hang up on idle clients (often after 60 s or less);
		// a fresh connection is cheaper than a failed first command.
		p.quit(c)
		c = nil
	}
	reused := c != nil
	for {
		if c == nil {
			var err error
			if c, err = p.dial(ctx); err != nil {
				return nil, err
			}
		}
		err := p.sendOn(ctx, c, w)
		switch {
		case err == nil:
			c.lastUsed = time.Now()
			return c, nil
		case reused && deadBeforeMail(err):
			c.smtp.Close()
			c, reused = nil, false
			continue
		case keepAfter(err) && c.smtp.Reset() == nil:
			// The server refused this mail but the session is sound; RSET
			// leaves it clean for the next one whatever stage failed.
			c.lastUsed = time.Now()
			return c, err
		}
		c.smtp.Close()
		return nil, err
	}
}

// sendOn sends on c, cutting the connection short when ctx ends: go-mail
// knows only its own timeout.
func (p *Pool) sendOn(ctx context.Context, c *conn, w *Wire) error {
	stop := context.AfterFunc(ctx, func() {
		c.net.SetDeadline(time.Unix(1, 0))
	})
	err := p.transact(c, w)
	if !stop() && err != nil {
		return fmt.Errorf("send: %w: %w", ctx.Err(), err)
	}
	return err
}

// deadBeforeMail reports whether err shows a connection that died while
// idle: no reply, or a 421 closing notice, at the first command of a mail.
func deadBeforeMail(err error) bool {
	var te *transactionError
	if !errors.As(err, &te) {
		return false
	}
	return te.stage == stageSender && (te.code == 0 || te.code == 421)
}

// keepAfter reports whether the connection may serve another mail after
// err: the server answered with a refusal other than 421 (which announces
// that it closes the connection), or go-mail refused the mail locally.
func keepAfter(err error) bool {
	var te *transactionError
	if !errors.As(err, &te) || te.broken || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	switch te.stage {
	case stageLocalMessage, stageLocalRecipient:
		return true
	}
	return te.code >= 400 && te.code != 421
}

func (p *Pool) dial(ctx context.Context) (*conn, error) {
	var nc net.Conn
	sc, err := p.client.DialToSMTPClientWithContext(context.WithValue(ctx, connKey{}, &nc))
	if err != nil {
		// go-mail leaves the connection open when EHLO, STARTTLS or AUTH fail.
		if nc != nil {
			nc.Close()
		}
		return nil, fmt.Errorf("dial %s: %w", p.cfg.Addr(), err)
	}
	return &conn{smtp: sc, net: nc, session: newSession(sc.Extension), lastUsed: time.Now()}, nil
}

// dialNet is the go-mail dial function. It does the implicit TLS handshake
// itself because go-mail uses its TLS dialer only without a dial function.
func (p *Pool) dialNet(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	var nc net.Conn
	var err error
	if p.cfg.tlsMode() == TLSImplicit {
		td := tls.Dialer{NetDialer: &d, Config: &tls.Config{ServerName: p.cfg.Host, MinVersion: tls.VersionTLS12}}
		nc, err = td.DialContext(ctx, network, addr)
	} else {
		nc, err = d.DialContext(ctx, network, addr)
	}
	if err != nil {
		return nil, err
	}
	if h, ok := ctx.Value(connKey{}).(*net.Conn); ok {
		*h = nc
	}
	return nc, nil
}

// quit ends a healthy connection politely, within a second.
func (p *Pool) quit(c *conn) error {
	c.net.SetDeadline(time.Now().Add(time.Second))
	err := c.smtp.Quit()
	c.smtp.Close()
	return err
}

// Close waits for the sends in progress, then closes every connection. Send
// returns ErrPoolClosed afterwards.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		close(p.done)
		var errs []error
		for range cap(p.slots) {
			if c := <-p.slots; c != nil {
				if err := p.quit(c); err != nil {
					errs = append(errs, err)
				}
			}
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
