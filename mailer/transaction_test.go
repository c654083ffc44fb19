package mailer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// pipeliningSMTP is an SMTP server that offers PIPELINING (and CHUNKING
// if chunking is set) and records, per connection, which commands arrived
// in one write of the client (those it could read without waiting for
// more), e.g. "EHLO|MAIL RCPT DATA|QUIT", and the messages it took.
type pipeliningSMTP struct {
	ln       net.Listener
	chunking bool
	// rcptReply and dataReply replace the server's answers to RCPT TO and
	// DATA when set.
	rcptReply, dataReply string

	mu     sync.Mutex
	conns  []string
	bodies []string
}

func startPipeliningSMTP(t *testing.T, rcptReply, dataReply string) *pipeliningSMTP {
	return startSMTP(t, false, rcptReply, dataReply)
}

func startSMTP(t *testing.T, chunking bool, rcptReply, dataReply string) *pipeliningSMTP {
	t.Helper()
	s := &pipeliningSMTP{chunking: chunking, rcptReply: rcptReply, dataReply: dataReply}
	s.ln = serveTCP(t, s.serve)
	return s
}

func (s *pipeliningSMTP) serve(c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	n := len(s.conns)
	s.conns = append(s.conns, "")
	s.mu.Unlock()
	var batch []string
	record := func(verb string, r *bufio.Reader) {
		batch = append(batch, verb)
		if r.Buffered() == 0 {
			s.mu.Lock()
			if s.conns[n] != "" {
				s.conns[n] += "|"
			}
			s.conns[n] += strings.Join(batch, " ")
			s.mu.Unlock()
			batch = nil
		}
	}
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(line string) {
		fmt.Fprint(w, line+"\r\n")
		// RFC 2920: replies to a group may be sent together; flush only
		// when the client waits for them.
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
	reply("220 pipelining ESMTP")
	inData := false
	refused := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		if verb != "BDAT" {
			// A BDAT's chunk is part of its write, recorded once read.
			record(verb, r)
		}
		switch verb {
		case "EHLO":
			if s.chunking {
				reply("250-pipelining\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES")
			} else {
				reply("250-pipelining\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES")
			}
		case "MAIL":
			refused = false
			reply("250 2.0.0 ok")
		case "RCPT":
			rr := orDefault(s.rcptReply, "250 2.1.5 ok")
			refused = !strings.HasPrefix(rr, "2")
			reply(rr)
		case "BDAT":
			var n int
			if _, err := fmt.Sscanf(line, "BDAT %d LAST", &n); err != nil {
				reply("501 5.5.4 syntax")
				continue
			}
			chunk := make([]byte, n)
			if _, err := io.ReadFull(r, chunk); err != nil {
				return
			}
			record(verb, r)
			if refused {
				reply("554 5.5.1 no valid recipients")
				continue
			}
			s.mu.Lock()
			s.bodies = append(s.bodies, string(chunk))
			s.mu.Unlock()
			reply("250 2.0.0 accepted")
		case "DATA":
			reply(orDefault(s.dataReply, "354 go on"))
			if !strings.HasPrefix(orDefault(s.dataReply, "354"), "354") {
				continue
			}
			inData = true
			var body strings.Builder
			for inData {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					inData = false
					break
				}
				body.WriteString(strings.TrimPrefix(l, "."))
			}
			s.mu.Lock()
			s.bodies = append(s.bodies, body.String())
			s.mu.Unlock()
			reply("250 2.0.0 accepted")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("250 2.0.0 ok")
		}
	}
}

func (s *pipeliningSMTP) connections() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.conns...)
}

func pipeliningPool(t *testing.T, s *pipeliningSMTP) *Pool {
	t.Helper()
	cfg, err := ParseSMTPURL("smtp://" + s.ln.Addr().String() + "?tls=none")
	if err != nil {
		t.Fatal(err)
	}
	return NewPool(cfg, 1)
}

// TestPoolPipelinesTheEnvelope: to a server that offers PIPELINING, MAIL
// FROM, RCPT TO and DATA go out in one write (one round trip instead of
// three), the message in the next.
func TestPoolPipelinesTheEnvelope(t *testing.T) {
	srv := startPipeliningSMTP(t, "", "")
	p := pipeliningPool(t, srv)
	for i, m := range buildN(t, loadTemplates(t, ""), 2) {
		if err := p.Send(t.Context(), m); err != nil {
			t.Fatalf("mail %d: %v", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	got := srv.connections()
	if want := []string{"EHLO|MAIL RCPT DATA|MAIL RCPT DATA|QUIT"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("writes per connection %q, want %q", got, want)
	}
	if len(srv.bodies) != 2 || !strings.Contains(srv.bodies[0], "Subject:") {
		t.Errorf("server got %d messages, want 2 with their headers", len(srv.bodies))
	}
}

// TestPoolPipelinedRefusals: a refused recipient in a pipelined group is
// classified by its own reply, not by the DATA refusal behind it, and the
// connection is kept when the server stayed in step (RFC 5321's 554 to
// DATA) and dropped when it accepted DATA without a recipient.
func TestPoolPipelinedRefusals(t *testing.T) {
	tests := []struct {
		name       string
		rcpt, data string
		want       Class
		conns      int
	}{
		{"550 at RCPT, 554 at DATA", "550 5.1.1 no such user", "554 5.5.1 no valid recipients", RecipientRejected, 1},
		{"451 at RCPT, 554 at DATA", "451 4.3.0 try later", "554 5.5.1 no valid recipients", Temporary, 1},
		{"550 at RCPT, yet 354 at DATA", "550 5.1.1 no such user", "354 go on", RecipientRejected, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startPipeliningSMTP(t, tt.rcpt, tt.data)
			p := pipeliningPool(t, srv)
			for i, m := range buildN(t, loadTemplates(t, ""), 2) {
				err := p.Send(t.Context(), m)
				if got := Classify(err); got != tt.want {
					t.Errorf("mail %d: Classify(%v) = %v, want %v", i, err, got, tt.want)
				}
			}
			p.Close()
			if got := srv.connections(); len(got) != tt.conns {
				t.Errorf("%d connections (%q), want %d", len(got), got, tt.conns)
			}
			if len(srv.bodies) != 0 {
				t.Errorf("the server got %d messages, want none", len(srv.bodies))
			}
		})
	}
}

// TestPoolSendsTheTransactionInOneWriteWithChunking: to a server that
// offers CHUNKING and PIPELINING, the envelope and the message go out in
// one write, as BDAT (RFC 3030), and arrive byte for byte, a line that
// starts with a dot included; a refused recipient is still classified by
// its own reply, and the connection stays in step.
func TestPoolSendsTheTransactionInOneWriteWithChunking(t *testing.T) {
	msg := "From: a@acme.example\r\nTo: b@example.org\r\nSubject: dots\r\n\r\n.hidden\r\n..two\r\nend\r\n"
	for _, tt := range []struct {
		name     string
		chunking bool
		rcpt     string
		want     Class
		writes   string
	}{
		{"BDAT", true, "", OK, "EHLO|MAIL RCPT BDAT|MAIL RCPT BDAT|QUIT"},
		{"BDAT, recipient refused", true, "550 5.1.1 no such user", RecipientRejected, "EHLO|MAIL RCPT BDAT|RSET|MAIL RCPT BDAT|RSET|QUIT"},
		{"DATA", false, "", OK, "EHLO|MAIL RCPT DATA|MAIL RCPT DATA|QUIT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSMTP(t, tt.chunking, tt.rcpt, "")
			p := pipeliningPool(t, srv)
			for i := range 2 {
				err := p.SendWire(t.Context(), &Wire{From: "<a@acme.example>", To: []string{"<b@example.org>"}, Data: []byte(msg)})
				if got := Classify(err); got != tt.want {
					t.Errorf("mail %d: Classify(%v) = %v, want %v", i, err, got, tt.want)
				}
			}
			p.Close()
			if got := strings.Join(srv.connections(), ","); got != tt.writes {
				t.Errorf("writes %q, want %q", got, tt.writes)
			}
			wantBodies := 2
			if tt.want != OK {
				wantBodies = 0
			}
			if len(srv.bodies) != wantBodies {
				t.Fatalf("the server took %d messages, want %d", len(srv.bodies), wantBodies)
			}
			for _, b := range srv.bodies {
				if b != msg {
					t.Errorf("the server took\n%q\nwant\n%q", b, msg)
				}
			}
		})
	}
}

func TestCRLFOnly(t *testing.T) {
	for in, want := range map[string]bool{
		"":           true,
		"a\r\n":      true,
		"a\r\nb\r\n": true,
		"a":          false,
		"a\n":        false,
		"\n":         false,
		"a\r\nb\n":   false,
		"a\r\nb":     false,
		"a\rb\r\n":   true, // a lone CR is not a line end
	} {
		if got := crlfOnly([]byte(in)); got != want {
			t.Errorf("crlfOnly(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestDotStuffMatchesTextproto compares writeLines with net/textproto's
// DotWriter, which go-mail used before, on the cases RFC 5321 section
// 4.5.2 is about.
func TestDotStuffMatchesTextproto(t *testing.T) {
	for _, in := range []string{
		"",
		"a\r\n",
		"a",
		".\r\n",
		"..\r\n",
		".leading dot\r\nnext\r\n",
		"line\r\n.\r\nend",
		"bare\nline feeds\n.dot\n",
		"mixed\r\nends\n.x\r\n",
		"=2E quoted\r\n.=\r\n\r\n",
		strings.Repeat("x", 5000) + "\r\n." + strings.Repeat("y", 100),
	} {
		var want bytes.Buffer
		bw := bufio.NewWriter(&want)
		dw := textproto.NewWriter(bw).DotWriter()
		dw.Write([]byte(in))
		dw.Close()
		bw.Flush()
		var got bytes.Buffer
		writeLines(&got, []byte(in), true)
		got.WriteString(".\r\n")
		if got.String() != want.String() {
			t.Errorf("writeLines(%q) = %q, textproto writes %q", in, got.String(), want.String())
		}
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
