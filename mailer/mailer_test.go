package mailer

import (
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/smtpsink"
)

func testCampaign() *repermit.Campaign {
	return &repermit.Campaign{
		ID:                "news-2026",
		From:              "ACME News <news@acme.example>",
		Subject:           "Do you still want ACME News?",
		ConfirmBaseURL:    "https://consent.acme.example",
		StartAt:           time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		Deadline:          time.Date(2026, 12, 31, 9, 0, 0, 0, time.UTC),
		UnsubscribeMailto: "unsubscribe@acme.example",
		Subjects: repermit.Text{
			"en": "Do you still want ACME News?",
			"de": "Möchten Sie ACME-Nachrichten weiter erhalten?",
			"da": "Vil du fortsat modtage ACME Nyheder?",
		},
		ListName: repermit.Text{"en": "ACME News", "de": "ACME-Nachrichten", "da": "ACME Nyheder"},
		Controller: repermit.Controller{
			Name: "ACME Handels GmbH", Address: "Hauptstraße 1, 10115 Berlin, Germany",
			Contact: "privacy@acme.example", PrivacyURL: "https://acme.example/privacy",
		},
	}
}

func testRecipient(index int64, locale string) *repermit.Recipient {
	return &repermit.Recipient{
		Campaign: "news-2026",
		Index:    index,
		Email:    "ada@example.org",
		Name:     "Ada Lovelace",
		Locale:   locale,
		Extra:    map[string]string{"company": "Analytical Engines"},
	}
}

func testData(c *repermit.Campaign, r *repermit.Recipient) Data {
	token := "TOKEN" + string(rune('A'+r.Index%26))
	return NewData(c, r, c.ConfirmBaseURL+"/c/"+token, c.ConfirmBaseURL+"/u/"+token)
}

func loadTemplates(t testing.TB, dir string) *Templates {
	t.Helper()
	tpl, err := LoadTemplates(dir)
	if err != nil {
		t.Fatalf("LoadTemplates(%q): %v", dir, err)
	}
	return tpl
}

func startSink(t testing.TB, opts smtpsink.Options) *smtpsink.Sink {
	t.Helper()
	s, err := smtpsink.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sinkPool(t testing.TB, s *smtpsink.Sink, size int) *Pool {
	t.Helper()
	cfg, err := ParseSMTPURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(cfg, size)
	t.Cleanup(func() { p.Close() })
	return p
}

// received is a mail as a reader's client would see it.
type received struct {
	header mail.Header
	parts  map[string]string // content type -> decoded body
}

func parseReceived(t *testing.T, data []byte) received {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("parse mail: %v", err)
	}
	r := received{header: msg.Header, parts: make(map[string]string)}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	if !strings.HasPrefix(mediaType, "multipart/") {
		body, _ := io.ReadAll(msg.Body)
		r.parts[mediaType] = string(body)
		return r
	}
	if mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type %s, want multipart/alternative", mediaType)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		// multipart.Reader undoes quoted-printable itself.
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read part %s: %v", ct, err)
		}
		r.parts[ct] = string(body)
	}
	return r
}

func decodeHeader(t *testing.T, h mail.Header, key string) string {
	t.Helper()
	var dec mime.WordDecoder
	v, err := dec.DecodeHeader(h.Get(key))
	if err != nil {
		t.Fatalf("decode %s: %v", key, err)
	}
	return v
}

// sendAndReceive builds a mail, sends it through a pool to a sink and
// returns it as received.
func sendAndReceive(t *testing.T, tpl *Templates, d Data, kind Kind) received {
	t.Helper()
	s := startSink(t, smtpsink.Options{})
	p := sinkPool(t, s, 1)
	m, err := tpl.Build(d, kind)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if err := p.Send(t.Context(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("sink has %d mails, want 1", len(msgs))
	}
	if got := msgs[0].To; len(got) != 1 || got[0] != d.Recipient.Email {
		t.Errorf("envelope recipients %q, want %q", got, d.Recipient.Email)
	}
	return parseReceived(t, msgs[0].Data)
}
