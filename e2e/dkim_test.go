package e2e

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit/dkimtest"
	"github.com/repermit/repermit/redistest"
)

// TestDKIMVerifiesAfterMailpit runs a campaign with a reminder through the
// repermit worker, DKIM-signed with RSA-2048 and with Ed25519, and has
// python3-dkim verify every mail exactly as Mailpit received it.
func TestDKIMVerifiesAfterMailpit(t *testing.T) {
	needReal(t)
	dkimtest.Need(t)
	t.Parallel()
	mp := startMailpit(t)
	const n = 3
	for i, alg := range []string{"rsa", "ed25519"} {
		t.Run(alg, func(t *testing.T) {
			key := dkimtest.NewKey(t, alg)
			r := redistest.New(t)
			smtpURL := mp.SMTPURL() + "&dkim_domain=e2e.example&dkim_selector=s" + alg + "&dkim_key=" + url.QueryEscape(key.File)
			w := newWorld(t, r.URL, r.Prefix, smtpURL)
			w.start("worker", "worker")
			id := "e2e-dkim-" + alg
			w.launch(w.writeCampaign(campaignSpec{ID: id, N: n, Deadline: "40s", Reminders: []string{"6s"}}))
			// Both campaigns share the Mailpit: the first leaves 2n mails.
			mp.WaitCount((i+1)*2*n, 60*time.Second)

			verified := 0
			for _, s := range mp.Messages() {
				if !strings.Contains(s.MessageID, "."+id+".") {
					continue
				}
				raw := mp.Raw(s.ID)
				report, ok := dkimtest.Verify(t, raw, "e2e.example", "s"+alg, key)
				if !ok {
					t.Errorf("python3-dkim rejects %s as received by Mailpit: %s\n%s", s.MessageID, report, raw)
					continue
				}
				h := strings.ToLower(report)
				if !strings.Contains(h, "list-unsubscribe:") || !strings.Contains(h, "list-unsubscribe-post") {
					t.Errorf("%s: signature does not cover List-Unsubscribe and List-Unsubscribe-Post: %s", s.MessageID, report)
				}
				verified++
			}
			if verified != 2*n {
				t.Errorf("%d mails of %s verified, want %d (initial and reminder to %d recipients)", verified, id, 2*n, n)
			}
			t.Logf("python3-dkim: %d of %d %s-signed mails pass after Mailpit", verified, 2*n, alg)
		})
	}
}
