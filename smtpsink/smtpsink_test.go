package smtpsink

import (
	"context"
	"errors"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

func start(t *testing.T, opts Options) *Sink {
	t.Helper()
	s, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// send delivers one mail with net/smtp, independent of the go-mail code the
// sink exists to test.
func send(t *testing.T, addr, to, body string) error {
	t.Helper()
	msg := "From: a@example.test\r\nTo: " + to + "\r\nSubject: hi\r\n\r\n" + body + "\r\n"
	return smtp.SendMail(addr, nil, "a@example.test", []string{to}, []byte(msg))
}

func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestSinkKeepsAcceptedMail(t *testing.T) {
	s := start(t, Options{})
	if err := send(t, s.Addr(), "b@example.test", "hello body"); err != nil {
		t.Fatal(err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 || s.Count() != 1 {
		t.Fatalf("got %d messages, count %d, want 1", len(msgs), s.Count())
	}
	m := msgs[0]
	if m.From != "a@example.test" || len(m.To) != 1 || m.To[0] != "b@example.test" {
		t.Errorf("envelope %q -> %q", m.From, m.To)
	}
	if got := m.Header.Get("Subject"); got != "hi" {
		t.Errorf("Subject = %q", got)
	}
	if !strings.Contains(string(m.Data), "hello body") {
		t.Errorf("data lacks the body: %q", m.Data)
	}
}

func TestSinkDiscardOnlyCounts(t *testing.T) {
	s := start(t, Options{Discard: true})
	for range 3 {
		if err := send(t, s.Addr(), "b@example.test", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if s.Count() != 3 || len(s.Messages()) != 0 {
		t.Errorf("count %d, kept %d; want 3, 0", s.Count(), len(s.Messages()))
	}
}

func TestSinkRefusals(t *testing.T) {
	s := start(t, Options{
		PermFail: map[string]bool{"gone@example.test": true},
		Reject: func(rcpt string, attempt int) *gosmtp.SMTPError {
			if rcpt == "later@example.test" && attempt == 1 {
				return &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 1}, Message: "busy"}
			}
			return nil
		},
		RejectData: func(from string, to []string) *gosmtp.SMTPError {
			if to[0] == "spam@example.test" {
				return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "no"}
			}
			return nil
		},
	})
	tests := []struct {
		to   string
		want int
	}{
		{"gone@example.test", 550},
		{"later@example.test", 450},
		{"later@example.test", 0}, // second attempt passes
		{"spam@example.test", 554},
		{"fine@example.test", 0},
	}
	for _, tt := range tests {
		err := send(t, s.Addr(), tt.to, "x")
		if got := code(err); got != tt.want {
			t.Errorf("send to %s: code %d (%v), want %d", tt.to, got, err, tt.want)
		}
	}
	if s.Count() != 2 {
		t.Errorf("accepted %d, want 2", s.Count())
	}
	if s.Attempts() != len(tests) {
		t.Errorf("attempts %d, want %d", s.Attempts(), len(tests))
	}
}

func TestSinkTempFailRateIsDeterministic(t *testing.T) {
	outcome := func() []bool {
		s := start(t, Options{TempFailRate: 0.5, Seed: 7, Discard: true})
		var failed []bool
		for i := range 40 {
			to := string(rune('a'+i%26)) + "x" + strings.Repeat("y", i/26) + "@example.test"
			err := send(t, s.Addr(), to, "x")
			if err != nil && code(err) != 451 {
				t.Fatalf("unexpected error %v", err)
			}
			failed = append(failed, err != nil)
		}
		return failed
	}
	a, b := outcome(), outcome()
	n := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("attempt %d differs between runs with the same seed", i)
		}
		if a[i] {
			n++
		}
	}
	if n < 8 || n > 32 {
		t.Errorf("%d of 40 failed at rate 0.5", n)
	}
}

func TestSinkWaitForAndReset(t *testing.T) {
	s := start(t, Options{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 5 {
			if err := send(t, s.Addr(), "b@example.test", "x"); err != nil {
				t.Error(err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitFor(ctx, 5); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	short, cancel2 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel2()
	if err := s.WaitFor(short, 6); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor beyond the count = %v, want deadline exceeded", err)
	}
	s.Reset()
	if s.Count() != 0 || s.Attempts() != 0 || s.Connections() != 0 || len(s.Messages()) != 0 {
		t.Errorf("after Reset: count %d attempts %d connections %d", s.Count(), s.Attempts(), s.Connections())
	}
}

func TestSinkDropConnections(t *testing.T) {
	s := start(t, Options{})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	if n := s.DropConnections(); n != 1 {
		t.Fatalf("dropped %d connections, want 1", n)
	}
	if err := c.Mail("a@example.test"); err == nil {
		t.Error("MAIL on a dropped connection succeeded")
	}
	if s.Connections() != 1 {
		t.Errorf("connections %d, want 1", s.Connections())
	}
}

func TestSinkDropAtRcpt(t *testing.T) {
	s := start(t, Options{Drop: func(rcpt string, attempt int) bool { return attempt == 1 }})
	if err := send(t, s.Addr(), "b@example.test", "x"); err == nil || code(err) != 0 {
		t.Errorf("first attempt: %v, want a connection error without a reply", err)
	}
	if err := send(t, s.Addr(), "b@example.test", "x"); err != nil {
		t.Errorf("second attempt: %v", err)
	}
}

func TestSinkCloseOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.served:
	case <-time.After(5 * time.Second):
		t.Fatal("sink still serving after its context ended")
	}
	if err := send(t, s.Addr(), "b@example.test", "x"); err == nil {
		t.Error("send to a closed sink succeeded")
	}
}
