package mailer

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// scriptedSMTP is a minimal SMTP server that accepts everything and
// records the commands it was sent.
type scriptedSMTP struct {
	ln   net.Listener
	mu   sync.Mutex
	cmds []string
}

func startScriptedSMTP(t *testing.T) *scriptedSMTP {
	t.Helper()
	s := &scriptedSMTP{}
	s.ln = serveTCP(t, s.serve)
	return s
}

// serveTCP listens on a loopback port until the test ends and serves each
// connection with serve.
func serveTCP(t *testing.T, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln
}

func (s *scriptedSMTP) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	fmt.Fprint(c, "220 scripted ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		s.mu.Lock()
		s.cmds = append(s.cmds, verb)
		s.mu.Unlock()
		switch verb {
		case "EHLO":
			fmt.Fprint(c, "250-scripted\r\n250 8BITMIME\r\n")
		case "DATA":
			fmt.Fprint(c, "354 go on\r\n")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			fmt.Fprint(c, "250 accepted\r\n")
		case "QUIT":
			fmt.Fprint(c, "221 bye\r\n")
			return
		default:
			fmt.Fprint(c, "250 ok\r\n")
		}
	}
}

func (s *scriptedSMTP) commands() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.cmds, " ")
}

// TestPoolSendsNoRSETAfterAnAcceptedMail: two mails on one connection are
// two transactions back to back. An RSET after the accepted DATA would be
// a round trip between the server's acceptance and the worker's record of
// the mail, the window in which a crash sends it twice.
func TestPoolSendsNoRSETAfterAnAcceptedMail(t *testing.T) {
	srv := startScriptedSMTP(t)
	cfg, err := ParseSMTPURL("smtp://" + srv.ln.Addr().String() + "?tls=none")
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(cfg, 1)
	for i, m := range buildN(t, loadTemplates(t, ""), 2) {
		if err := p.Send(t.Context(), m); err != nil {
			t.Fatalf("mail %d: %v", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := srv.commands(), "EHLO MAIL RCPT DATA MAIL RCPT DATA QUIT"; got != want {
		t.Errorf("commands %q, want %q", got, want)
	}
}
