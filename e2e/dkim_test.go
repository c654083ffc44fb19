package e2e

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit/dkimtest"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/redistest"
)

// TestDKIMVerifiesAfterMailpit runs a campaign with a reminder, one
// recipient per default locale, through the repermit worker, DKIM-signed with RSA-2048 and with Ed25519, and has
// python3-dkim verify every mail exactly as Mailpit received it.
func TestDKIMVerifiesAfterMailpit(t *testing.T) {
	needReal(t)
	dkimtest.Need(t)
	t.Parallel()
	mp := startMailpit(t)
	// One recipient per default locale, each mailed twice.
	var locals []string
	for _, l := range defaultLocales(t) {
		locals = append(locals, "loc-"+l)
	}
	n := len(locals)
	for i, alg := range []string{"rsa", "ed25519"} {
		t.Run(alg, func(t *testing.T) {
			key := dkimtest.NewKey(t, alg)
			r := redistest.New(t)
			smtpURL := mp.SMTPURL() + "&dkim_domain=e2e.example&dkim_selector=s" + alg + "&dkim_key=" + url.QueryEscape(key.File)
			w := newWorld(t, r.URL, r.Prefix, smtpURL)
			w.start("worker", "worker")
			id := "e2e-dkim-" + alg
			w.launch(w.writeMTACampaign(id, locals, "40s", "6s"))
			// Both campaigns share the Mailpit: the first leaves 2n mails.
			mp.WaitCount((i+1)*2*n, 60*time.Second)

			var raws [][]byte
			var ids []string
			for _, s := range mp.Messages() {
				if strings.Contains(s.MessageID, "."+id+".") {
					raws = append(raws, mp.Raw(s.ID))
					ids = append(ids, s.MessageID)
				}
			}
			verified := 0
			for j, res := range dkimtest.VerifyAll(t, raws, "e2e.example", "s"+alg, key) {
				report, ok := res.Report, res.OK
				if !ok {
					t.Errorf("python3-dkim rejects %s as received by Mailpit: %s\n%s", ids[j], report, raws[j])
					continue
				}
				h := strings.ToLower(report)
				if !strings.Contains(h, "list-unsubscribe:") || !strings.Contains(h, "list-unsubscribe-post") {
					t.Errorf("%s: signature does not cover List-Unsubscribe and List-Unsubscribe-Post: %s", ids[j], report)
				}
				verified++
			}
			if verified != 2*n {
				t.Errorf("%d mails of %s verified, want %d (initial and reminder to %d recipients)", verified, id, 2*n, n)
			}
			t.Logf("python3-dkim: %d of %d %s-signed mails (initial and reminder in %d locales) pass after Mailpit", verified, 2*n, alg, n)
		})
	}
}

// defaultLocales lists the languages of the default mails.
func defaultLocales(t *testing.T) []string {
	t.Helper()
	return locale.Default().Locales()
}
