package mailer

import (
	"bytes"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/repermit/repermit/dkimtest"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/smtpsink"
)

// defaultLocales lists the languages of the default mails.
func defaultLocales(t *testing.T) []string {
	t.Helper()
	return locale.Default().Locales()
}

// TestDKIMSignatureVerifiesAsReceived sends every default mail (each
// locale, initial and reminder), built by Build and by BuildWire, through
// a pool signing with RSA-2048 and with Ed25519, and has python3-dkim
// verify each message exactly as the SMTP server received it.
func TestDKIMSignatureVerifiesAsReceived(t *testing.T) {
	dkimtest.Need(t)
	tpl := loadTemplates(t, "")
	locales := defaultLocales(t)
	for _, alg := range []string{"rsa", "ed25519"} {
		t.Run(alg, func(t *testing.T) {
			key := dkimtest.NewKey(t, alg)
			s := startSink(t, smtpsink.Options{})
			cfg, err := ParseSMTPURL(s.URL() + "&dkim_domain=acme.example&dkim_selector=mail2026&dkim_key=" + url.QueryEscape(key.File))
			if err != nil {
				t.Fatal(err)
			}
			p := NewPool(cfg, 4)
			defer p.Close()

			c := testCampaign()
			var wg sync.WaitGroup
			sent := 0
			for i, loc := range locales {
				for _, kind := range []Kind{Initial, Reminder(1), Reminder(2)} {
					r := testRecipient(int64(i*10+kind.Step()), loc)
					// Non-ASCII in a header is encoded and folded by go-mail;
					// the signature must cover it as sent.
					r.Name = "Zoë Ødegård-Müller, Analytical Engines Ltd. & Sons"
					m, err := tpl.Build(testData(c, r), kind)
					if err != nil {
						t.Fatal(err)
					}
					// And the same mail as the worker sends it: BuildWire's
					// bytes, its long name folded by BuildWire.
					rw := *r
					rw.Index += 1000
					rw.Name = strings.Repeat(r.Name+" ", 4)
					w, err := tpl.BuildWire(testData(c, &rw), kind, "", nil)
					if err != nil {
						t.Fatal(err)
					}
					sent += 2
					// Concurrent sends share one signer; -race checks that.
					wg.Go(func() {
						if err := p.Send(t.Context(), m); err != nil {
							t.Error(err)
						}
					})
					wg.Go(func() {
						if err := p.SendWire(t.Context(), w); err != nil {
							t.Error(err)
						}
					})
				}
			}
			wg.Wait()
			msgs := s.Messages()
			if len(msgs) != sent {
				t.Fatalf("sink has %d mails, want %d", len(msgs), sent)
			}
			raws := make([][]byte, len(msgs))
			for i, m := range msgs {
				raws[i] = m.Data
			}
			results := dkimtest.VerifyAll(t, raws, "acme.example", "mail2026", key)
			for i, m := range msgs {
				report, ok := results[i].Report, results[i].OK
				if !ok {
					t.Errorf("python3-dkim rejects %s: %s\n%s", m.Header.Get("Message-ID"), report, m.Data)
					continue
				}
				h := strings.ToLower(report[strings.Index(report, "h="):])
				for _, name := range DKIMHeaders {
					if !strings.Contains(":"+strings.TrimPrefix(h, "h=")+":", ":"+strings.ToLower(name)+":") {
						t.Errorf("%s: h= lacks %s: %s", m.Header.Get("Message-ID"), name, report)
					}
				}
				if want := alg + "-sha256"; !strings.Contains(report, want) {
					t.Errorf("%s: %s, want a=%s", m.Header.Get("Message-ID"), report, want)
				}
			}
			t.Logf("python3-dkim: %d of %d %s-signed mails pass", len(msgs), sent, alg)
		})
	}
}

// TestDKIMVerifierRejectsAlteredMail shows that the check above can fail:
// the same received mail fails after a change to a signed header, to the
// body, or with another key published.
func TestDKIMVerifierRejectsAlteredMail(t *testing.T) {
	dkimtest.Need(t)
	key := dkimtest.NewKey(t, "ed25519")
	s := startSink(t, smtpsink.Options{})
	cfg, err := ParseSMTPURL(s.URL() + "&dkim_domain=acme.example&dkim_selector=mail2026&dkim_key=" + url.QueryEscape(key.File))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(cfg, 1)
	defer p.Close()
	if err := p.Send(t.Context(), buildN(t, loadTemplates(t, ""), 1)[0]); err != nil {
		t.Fatal(err)
	}
	raw := s.Messages()[0].Data
	if report, ok := dkimtest.Verify(t, raw, "acme.example", "mail2026", key); !ok {
		t.Fatalf("unaltered mail fails: %s", report)
	}
	tests := []struct {
		name string
		raw  []byte
		key  dkimtest.Key
	}{
		{"List-Unsubscribe-Post changed", bytes.Replace(raw, []byte("List-Unsubscribe=One-Click"), []byte("List-Unsubscribe=Two-Click"), 1), key},
		{"body changed", bytes.Replace(raw, []byte("ACME"), []byte("ACNE"), 1), key},
		{"other key published", raw, dkimtest.NewKey(t, "ed25519")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(tt.raw, raw) && tt.key.File == key.File {
				t.Fatal("test case changes nothing")
			}
			if report, ok := dkimtest.Verify(t, tt.raw, "acme.example", "mail2026", tt.key); ok {
				t.Errorf("python3-dkim accepts it: %s", report)
			}
		})
	}
}
