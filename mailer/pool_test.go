package mailer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	gomail "github.com/wneessen/go-mail"

	"github.com/repermit/repermit/smtpsink"
)

func buildN(t testing.TB, tpl *Templates, n int) []*gomail.Msg {
	t.Helper()
	c := testCampaign()
	msgs := make([]*gomail.Msg, n)
	for i := range msgs {
		r := testRecipient(int64(i), "en")
		m, err := tpl.Build(testData(c, r), Initial)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
	}
	return msgs
}

func TestPoolReusesConnections(t *testing.T) {
	tpl := loadTemplates(t, "")
	s := startSink(t, smtpsink.Options{Discard: true})
	const size, senders, mails = 4, 16, 200
	p := sinkPool(t, s, size)

	msgs := buildN(t, tpl, mails)
	var wg sync.WaitGroup
	next := make(chan *gomail.Msg)
	for range senders {
		wg.Go(func() {
			for m := range next {
				if err := p.Send(t.Context(), m); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, m := range msgs {
		next <- m
	}
	close(next)
	wg.Wait()

	if s.Count() != mails {
		t.Errorf("sink accepted %d mails, want %d", s.Count(), mails)
	}
	if c := s.Connections(); c < 1 || c > size {
		t.Errorf("%d connections for %d mails, want at most %d", c, mails, size)
	}
}

func TestPoolRedialsAfterTheServerDropsTheConnection(t *testing.T) {
	tpl := loadTemplates(t, "")
	s := startSink(t, smtpsink.Options{})
	p := sinkPool(t, s, 1)
	msgs := buildN(t, tpl, 3)

	if err := p.Send(t.Context(), msgs[0]); err != nil {
		t.Fatal(err)
	}
	if n := s.DropConnections(); n != 1 {
		t.Fatalf("sink dropped %d connections, want 1", n)
	}
	// The pool cannot know yet; the send must still succeed, on a new
	// connection, without delivering twice.
	if err := p.Send(t.Context(), msgs[1]); err != nil {
		t.Fatalf("send after the drop: %v", err)
	}
	if err := p.Send(t.Context(), msgs[2]); err != nil {
		t.Fatal(err)
	}
	if s.Count() != 3 || s.Connections() != 2 {
		t.Errorf("sink has %d mails on %d connections, want 3 on 2", s.Count(), s.Connections())
	}
}

func TestPoolKeepsTheConnectionAfterARefusal(t *testing.T) {
	tpl := loadTemplates(t, "")
	s := startSink(t, smtpsink.Options{
		RejectData: func(_ string, to []string) *smtp.SMTPError {
			if s := to[0]; strings.HasPrefix(s, "spam") {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}
			}
			return nil
		},
		PermFail: map[string]bool{"gone@example.org": true},
	})
	p := sinkPool(t, s, 1)
	c := testCampaign()
	for i, to := range []string{"gone@example.org", "a@example.org", "spam@example.org", "b@example.org"} {
		r := testRecipient(int64(i), "en")
		r.Email = to
		m, err := tpl.Build(testData(c, r), Initial)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Send(t.Context(), m)
		if refused := to == "gone@example.org" || to == "spam@example.org"; refused != (err != nil) {
			t.Errorf("send to %s: %v", to, err)
		}
	}
	if s.Count() != 2 || s.Connections() != 1 {
		t.Errorf("sink has %d mails on %d connections, want 2 on 1", s.Count(), s.Connections())
	}
}

// A server that hangs up right after accepting a mail has taken it: Send
// reports it sent, and the next mail goes over a new connection.
func TestPoolReportsADeliveredMailAsSentWhenTheServerHangsUpAfterIt(t *testing.T) {
	tpl := loadTemplates(t, "")
	s := startSink(t, smtpsink.Options{
		DropAfterData: func(string, []string) bool { return true },
	})
	p := sinkPool(t, s, 1)
	msgs := buildN(t, tpl, 2)
	for i, m := range msgs {
		if err := p.Send(t.Context(), m); err != nil {
			t.Fatalf("mail %d: %v; the server accepted it", i, err)
		}
	}
	if s.Count() != 2 || s.Connections() != 2 {
		t.Errorf("sink has %d mails on %d connections, want 2 on 2", s.Count(), s.Connections())
	}
}

func TestPoolDoesNotRetryAfterRCPT(t *testing.T) {
	tpl := loadTemplates(t, "")
	// The second RCPT for the address is dropped, on the reused connection:
	// the pool must not resend by itself, since RCPT was reached.
	s := startSink(t, smtpsink.Options{Drop: func(rcpt string, attempt int) bool { return attempt == 2 }})
	p := sinkPool(t, s, 1)
	msgs := buildN(t, tpl, 2)
	for _, m := range msgs {
		m.SetAddrHeaderIgnoreInvalid(gomail.HeaderTo, "same@example.org")
	}
	if err := p.Send(t.Context(), msgs[0]); err != nil {
		t.Fatal(err)
	}
	err := p.Send(t.Context(), msgs[1])
	if Classify(err) != Temporary {
		t.Fatalf("drop at RCPT: %v, want a Temporary error", err)
	}
	if s.Attempts() != 2 {
		t.Errorf("sink saw %d RCPT attempts, want 2 (no hidden retry)", s.Attempts())
	}
}

func TestPoolHonoursContext(t *testing.T) {
	tpl := loadTemplates(t, "")
	s := startSink(t, smtpsink.Options{})
	p := sinkPool(t, s, 1)
	msgs := buildN(t, tpl, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := p.Send(ctx, msgs[0])
	if !errors.Is(err, context.Canceled) || Classify(err) != Temporary {
		t.Errorf("Send with a cancelled context = %v", err)
	}
	if s.Count() != 0 {
		t.Errorf("a cancelled send delivered")
	}
}

func TestPoolWaitsForAFreeConnection(t *testing.T) {
	tpl := loadTemplates(t, "")
	// A server that holds every RCPT keeps the only connection busy.
	release := make(chan struct{})
	s := startSink(t, smtpsink.Options{Reject: func(string, int) *smtp.SMTPError {
		<-release
		return nil
	}})
	p := sinkPool(t, s, 1)
	msgs := buildN(t, tpl, 2)
	done := make(chan error)
	go func() { done <- p.Send(context.Background(), msgs[0]) }()
	time.Sleep(50 * time.Millisecond)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.Send(ctx, msgs[1]); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("send while the pool is busy = %v, want deadline exceeded", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPoolClose(t *testing.T) {
	tpl := loadTemplates(t, "")
	s := startSink(t, smtpsink.Options{})
	p := sinkPool(t, s, 2)
	msgs := buildN(t, tpl, 2)
	if err := p.Send(t.Context(), msgs[0]); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := p.Send(t.Context(), msgs[1]); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Send after Close = %v, want ErrPoolClosed", err)
	}
}

func TestPoolWithBadConfigFailsEverySend(t *testing.T) {
	tpl := loadTemplates(t, "")
	p := NewPool(Config{Host: "", TLS: TLSNone}, 1)
	defer p.Close()
	err := p.Send(t.Context(), buildN(t, tpl, 1)[0])
	if err == nil {
		t.Fatal("Send with no host succeeded")
	}
}

func TestDialErrors(t *testing.T) {
	tpl := loadTemplates(t, "")
	s := startSink(t, smtpsink.Options{})
	tests := []struct {
		name string
		url  string
	}{
		// The sink offers neither STARTTLS nor AUTH PLAIN without TLS.
		{"starttls required", "smtp://" + s.Addr() + "?tls=starttls"},
		{"nothing listening", "smtp://127.0.0.1:1?tls=none&timeout=1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseSMTPURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			p := NewPool(cfg, 1)
			defer p.Close()
			err = p.Send(t.Context(), buildN(t, tpl, 1)[0])
			if err == nil || !strings.Contains(err.Error(), "dial") {
				t.Errorf("Send = %v, want a dial error", err)
			}
		})
	}
}

func TestPoolReplacesIdleConnections(t *testing.T) {
	tpl := loadTemplates(t, "")
	s := startSink(t, smtpsink.Options{})
	cfg, err := ParseSMTPURL(s.URL() + "&idle_timeout=200ms")
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(cfg, 1)
	defer p.Close()
	msgs := buildN(t, tpl, 3)
	for i, m := range msgs {
		if i == 2 {
			time.Sleep(400 * time.Millisecond)
		}
		if err := p.Send(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	if s.Count() != 3 || s.Connections() != 2 {
		t.Errorf("sink has %d mails on %d connections, want 3 on 2", s.Count(), s.Connections())
	}
}
