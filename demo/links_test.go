package demo

import (
	"bytes"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
)

// TestParseLinksReadsBuiltMail parses the mail the mailer builds, after its
// transfer encoding, as the simulated recipients and the e2e tests do.
func TestParseLinksReadsBuiltMail(t *testing.T) {
	tpl, err := mailer.LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	c := &repermit.Campaign{ID: "c1", From: "ACME <news@acme.example>", Subject: "Still?", Deadline: time.Now().Add(time.Hour), Topics: []string{"a", "b"}}
	tests := []struct {
		name     string
		kind     mailer.Kind
		locale   string
		reminder bool
	}{
		{"initial en", mailer.Initial, "en", false},
		{"reminder de", mailer.Reminder(1), "de", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &repermit.Recipient{Campaign: "c1", Index: 7, Email: "zoë@example.com", Name: "Zoë Ä. Long-Name", Locale: tt.locale}
			confirm := "http://127.0.0.1:8080/c/AbC-_0123456789abcdefghijklmnopqrstuvwxyzABCD"
			unsub := "http://127.0.0.1:8080/u/XyZ-_0123456789abcdefghijklmnopqrstuvwxyzABCD"
			m, err := tpl.Build(mailer.NewData(c, r, confirm, unsub), tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			var raw bytes.Buffer
			if _, err := m.WriteTo(&raw); err != nil {
				t.Fatal(err)
			}
			l, err := ParseLinks(raw.Bytes())
			if err != nil {
				t.Fatalf("ParseLinks: %v\n%s", err, raw.String())
			}
			want := Links{
				To: r.Email, Confirm: confirm, Yes: confirm + "?answer=yes", No: confirm + "?answer=no",
				Unsubscribe: unsub, OneClick: true,
				MessageID: mailer.MessageID("c1", 7, tt.kind, c.From),
			}
			l.Text = ""
			if l != want {
				t.Errorf("ParseLinks:\n got %+v\nwant %+v", l, want)
			}
			if l.Reminder() != tt.reminder {
				t.Errorf("Reminder() = %v, want %v", l.Reminder(), tt.reminder)
			}
		})
	}
}

func TestParseLinksRefusesMailWithoutConfirmLink(t *testing.T) {
	raw := "To: a@example.com\r\nContent-Type: text/plain\r\n\r\nhello, no links here\r\n"
	if _, err := ParseLinks([]byte(raw)); err == nil {
		t.Fatal("ParseLinks accepted a mail without a confirm link")
	}
}
