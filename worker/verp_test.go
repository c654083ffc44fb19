package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
)

// TestEachMailHasItsOwnSignedReturnPath checks the envelope sender the SMTP
// server received: with a bounce domain, each mail's is
// bounces+TOKEN@domain, its token names that mail's campaign and
// recipient and nothing of the address; without one, it is the From
// address.
func TestEachMailHasItsOwnSignedReturnPath(t *testing.T) {
	tests := []struct {
		name         string
		bounceDomain string
	}{
		{"with bounce domain", "bounce.acme.example"},
		{"without", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 20
			e := newEnv(t, smtpsink.Options{})
			c := e.launch(repermit.Campaign{}, n, nil)
			cfg := e.config()
			cfg.SMTP.BounceDomain = tt.bounceDomain
			e.start(cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.sink.WaitFor(ctx, n); err != nil {
				t.Fatal(err)
			}
			seen := make(map[string]bool)
			for _, m := range e.sink.Messages() {
				if tt.bounceDomain == "" {
					if m.From != "news@acme.example" {
						t.Errorf("mail to %s: envelope sender %q, want the From address", m.To[0], m.From)
					}
					continue
				}
				if !strings.HasPrefix(m.From, token.BouncePrefix) || !strings.HasSuffix(m.From, "@"+tt.bounceDomain) {
					t.Fatalf("mail to %s: envelope sender %q, want bounces+TOKEN@%s", m.To[0], m.From, tt.bounceDomain)
				}
				// The token is the only thing between prefix and domain
				// (VerifyBounceAddress below decodes all of it), so the
				// address cannot hide in it in clear.
				if local := m.From[:strings.IndexByte(m.From, '@')]; strings.Contains(m.From, m.To[0]) || len(local) > 64 {
					t.Errorf("envelope sender %q shows the address %s or is too long", m.From, m.To[0])
				}
				claims, err := e.signer.VerifyBounceAddress(m.From, time.Now())
				if err != nil {
					t.Fatalf("envelope sender %q: %v", m.From, err)
				}
				if claims.CampaignSeq != c.Seq || addr(int(claims.Recipient), nil) != m.To[0] {
					t.Errorf("mail to %s: Return-Path names campaign %d recipient %d", m.To[0], claims.CampaignSeq, claims.Recipient)
				}
				seen[m.From] = true
			}
			if tt.bounceDomain != "" && len(seen) != n {
				t.Errorf("%d distinct Return-Paths for %d mails", len(seen), n)
			}
		})
	}
}
