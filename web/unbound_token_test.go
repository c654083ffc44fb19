package web

import (
	"context"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
)

// signVersion1 writes a link as repermit signed them before tokens were
// bound to their deployment and campaign (token format version 1, commit
// 17a9a5a), written out here from that format's description so that the
// test does not lean on the code it checks.
func signVersion1(t *testing.T, secret string, p token.Purpose, seq, recipient uint32, deadline int64) string {
	t.Helper()
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(label))
		return m.Sum(nil)
	}
	block, err := aes.NewCipher(derive("repermit token enc v1")[:16])
	if err != nil {
		t.Fatal(err)
	}
	var pt, ct [16]byte
	pt[0], pt[1] = 1, byte(p)
	binary.BigEndian.PutUint32(pt[2:6], seq)
	binary.BigEndian.PutUint32(pt[6:10], recipient)
	binary.BigEndian.PutUint32(pt[10:14], uint32(deadline))
	block.Encrypt(ct[:], pt[:])
	mac := hmac.New(sha256.New, derive("repermit token mac v1"))
	mac.Write(ct[:])
	return base64.RawURLEncoding.EncodeToString(append(ct[:], mac.Sum(nil)[:16]...))
}

// TestUnboundLinksOfOlderCampaignsStillWithdraw: a campaign launched before
// links were bound keeps its mailed (version 1) links working, so its
// confirmed recipients can still unsubscribe after the deadline; a campaign
// launched since refuses such links as forged.
func TestUnboundLinksOfOlderCampaignsStillWithdraw(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-test" // the harness's
	for _, tc := range []struct {
		name        string
		launchedOld bool
		want        int
	}{
		{"campaign launched before the binding", true, http.StatusOK},
		{"campaign launched since", false, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			if tc.launchedOld {
				// What a launch before the binding left in Redis: the
				// same configuration without bound_tokens.
				key := h.r.Prefix + ":{" + h.c.ID + "}:meta"
				var cfg map[string]any
				if err := json.Unmarshal([]byte(h.r.Client.HGet(ctx, key, "cfg").Val()), &cfg); err != nil {
					t.Fatal(err)
				}
				if cfg["bound_tokens"] != true {
					t.Fatalf("launch did not mark the campaign's links bound: %v", cfg["bound_tokens"])
				}
				delete(cfg, "bound_tokens")
				b, _ := json.Marshal(cfg)
				h.r.Client.HSet(ctx, key, "cfg", string(b))
			}
			if _, err := h.store.Record(ctx, redisstore.Answer{Campaign: h.c.ID, Index: 1, State: repermit.StateConfirmed,
				Topics: []string{"yoga"}, At: t0.Add(time.Hour), IP: "192.0.2.0", UserAgent: "test", WordingSHA256: strings.Repeat("0", 64)}); err != nil {
				t.Fatal(err)
			}
			h.setNow(h.c.Deadline.Add(48 * time.Hour))
			tok := signVersion1(t, secret, token.Unsubscribe, h.c.Seq, 1, h.c.Deadline.Unix())
			before := h.dump()
			rec := h.postForm("/u/"+tok, url.Values{"List-Unsubscribe": {"One-Click"}})
			if rec.Code != tc.want {
				t.Fatalf("RFC 8058 POST with a version 1 link: %d, want %d\n%s", rec.Code, tc.want, rec.Body)
			}
			got := h.recipient(1).State
			switch {
			case tc.want == http.StatusOK && got != repermit.StateUnsubscribed:
				t.Errorf("after the withdrawal: %s, want unsubscribed", got)
			case tc.want != http.StatusOK && (got != repermit.StateConfirmed || h.dump() != before):
				t.Errorf("a refused link changed Redis: state %s", got)
			}
		})
	}
}
