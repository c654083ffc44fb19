package bounces_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/token"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// fixture reads testdata/name with its placeholders replaced.
func fixture(t *testing.T, name string, vars ...string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	defaults := map[string]string{"{{STATUS}}": "5.1.1", "{{FEEDBACK}}": "abuse", "{{VERP}}": "bounces+x@b.example", "{{UNSUB}}": "https://consent.acme.example/u/x",
		"{{ORIGID}}": "<repermit.news.1.initial@acme.example>"}
	for i := 0; i+1 < len(vars); i += 2 {
		defaults[vars[i]] = vars[i+1]
	}
	for k, v := range defaults {
		s = strings.ReplaceAll(s, k, v)
	}
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

func newSigner(t *testing.T, secret string) *token.Signer {
	t.Helper()
	s, err := token.NewSigner([][]byte{[]byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseClassifies(t *testing.T) {
	const verp = "bounces+abc@bounce.acme.example"
	tests := []struct {
		name      string
		raw       []byte
		kind      bounces.Kind
		source    string
		status    string
		wantAddr  bool
		wantUnsub string
	}{
		{"postfix hard bounce", fixture(t, "postfix-dsn.eml", "{{VERP}}", verp), bounces.Hard, "dsn", "5.1.1", true, ""},
		{"failed with a 4.x.x status", fixture(t, "postfix-dsn.eml", "{{VERP}}", verp, "{{STATUS}}", "4.4.7"), bounces.Soft, "dsn", "4.4.7", true, ""},
		{"delayed", fixture(t, "delayed-dsn.eml", "{{VERP}}", verp), bounces.Soft, "dsn", "4.4.1", true, ""},
		{"delivered", fixture(t, "success-dsn.eml", "{{VERP}}", verp), bounces.Delivered, "dsn", "2.0.0", true, ""},
		{"abuse report", fixture(t, "arf.eml", "{{UNSUB}}", "https://c.example/u/TOK"), bounces.Complaint, "arf", "abuse", false, "https://c.example/u/TOK"},
		{"not-spam report", fixture(t, "arf.eml", "{{FEEDBACK}}", "not-spam"), bounces.Unknown, "arf", "not-spam", false, ""},
		{"vacation reply", fixture(t, "vacation.eml", "{{VERP}}", verp), bounces.AutoReply, "", "", true, ""},
		{"unrelated mail", fixture(t, "unrelated.eml", "{{VERP}}", verp), bounces.Unknown, "", "", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := bounces.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != tt.kind || r.Source != tt.source || r.Status != tt.status {
				t.Errorf("Parse = %v/%q/%q, want %v/%q/%q", r.Kind, r.Source, r.Status, tt.kind, tt.source, tt.status)
			}
			if got := slices.Contains(r.Addresses, verp); got != tt.wantAddr {
				t.Errorf("addresses %v: contains %s = %v, want %v", r.Addresses, verp, got, tt.wantAddr)
			}
			if tt.wantUnsub != "" && !slices.Contains(r.Links, tt.wantUnsub) {
				t.Errorf("links %v lack %s", r.Links, tt.wantUnsub)
			}
		})
	}
}

// env is a campaign of n recipients, all mailed once.
type env struct {
	store  *redisstore.Store
	signer *token.Signer
	c      repermit.Campaign
	p      *bounces.Processor
}

func newEnv(t *testing.T, n int) *env {
	t.Helper()
	ctx := context.Background()
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	c := repermit.Campaign{ID: "news", From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour)}
	imp, err := st.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	idxs := make([]int64, n)
	for i := range n {
		if err := imp.Add(ctx, fmt.Sprintf("a%d@example.org", i), "", "en", nil); err != nil {
			t.Fatal(err)
		}
		idxs[i] = int64(i)
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: c.ID, Imported: int64(n)}); err != nil {
		t.Fatal(err)
	}
	c = imp.Campaign()
	if errs, err := st.ClaimBatch(ctx, c.ID, idxs, 1, t0, time.Minute); err != nil || errors.Join(errs...) != nil {
		t.Fatal(err, errs)
	}
	if errs, err := st.MarkSentBatch(ctx, c.ID, idxs, 1, t0); err != nil || errors.Join(errs...) != nil {
		t.Fatal(err, errs)
	}
	sig := newSigner(t, "0123456789abcdef0123456789abcdef-bounces")
	return &env{store: st, signer: sig, c: c, p: &bounces.Processor{
		Store: st, Signer: sig, Now: func() time.Time { return t0.Add(time.Minute) },
	}}
}

func (e *env) verp(idx int) string {
	return e.signer.BounceAddress(token.Claims{Campaign: e.c.ID, CampaignSeq: e.c.Seq, Recipient: uint32(idx), Deadline: e.c.Deadline}, "bounce.acme.example")
}

func (e *env) unsub(idx int) string {
	return "https://consent.acme.example/u/" + e.signer.Sign(token.Claims{Purpose: token.Unsubscribe, Campaign: e.c.ID, CampaignSeq: e.c.Seq, Recipient: uint32(idx), Deadline: e.c.Deadline})
}

func (e *env) state(t *testing.T, idx int) repermit.State {
	t.Helper()
	r, err := e.store.Recipient(context.Background(), e.c.ID, int64(idx))
	if err != nil {
		t.Fatal(err)
	}
	return r.State
}

func TestProcessAppliesEachReportOnce(t *testing.T) {
	e := newEnv(t, 8)
	ctx := context.Background()
	other := newSigner(t, "another-deployment-secret-0123456789abcdef")
	forgedVERP := other.BounceAddress(token.Claims{Campaign: e.c.ID, CampaignSeq: e.c.Seq, Recipient: 5, Deadline: e.c.Deadline}, "bounce.acme.example")
	// delayed is the n-th delay report about recipient 1's mail of the
	// given kind (initial, reminder1, …).
	delayed := func(n int, kind string) []byte {
		raw := fixture(t, "delayed-dsn.eml", "{{VERP}}", e.verp(1), "{{ORIGID}}", "<repermit.news.1."+kind+"@acme.example>")
		return []byte(strings.Replace(string(raw), "delayed-1@", fmt.Sprintf("delayed-%d@", n), 1))
	}
	tests := []struct {
		name    string
		raw     []byte
		matched bool
		first   bool
		changed repermit.State
		idx     int
	}{
		{"hard bounce", fixture(t, "postfix-dsn.eml", "{{VERP}}", e.verp(0)), true, true, repermit.StateBounced, 0},
		{"the same hard bounce again", fixture(t, "postfix-dsn.eml", "{{VERP}}", e.verp(0)), true, false, "", 0},
		{"first soft bounce", delayed(1, "initial"), true, true, "", 1},
		{"first soft bounce again", delayed(1, "initial"), true, false, "", 1},
		{"another report of the same mail's delay", delayed(2, "initial"), true, false, "", 1},
		{"second soft bounce: the first reminder", delayed(3, "reminder1"), true, true, "", 1},
		{"third soft bounce bounces: the second reminder", delayed(4, "reminder2"), true, true, repermit.StateBounced, 1},
		{"complaint", fixture(t, "arf.eml", "{{UNSUB}}", e.unsub(2)), true, true, repermit.StateUnsubscribed, 2},
		{"the same complaint again", fixture(t, "arf.eml", "{{UNSUB}}", e.unsub(2)), true, false, "", 2},
		{"a VERP token upper-cased by a relay", fixture(t, "postfix-dsn.eml", "{{VERP}}", strings.ToUpper(e.verp(6))), true, true, repermit.StateBounced, 6},
		{"forged: another deployment's token", fixture(t, "postfix-dsn.eml", "{{VERP}}", forgedVERP), false, false, "", 5},
		{"forged: no token, only the address", fixture(t, "postfix-dsn.eml", "{{VERP}}", "bounces@bounce.acme.example"), false, false, "", 5},
		{"complaint with a forged link", fixture(t, "arf.eml", "{{UNSUB}}", strings.Replace(e.unsub(3), "/u/", "/u/A", 1)), false, false, "", 3},
		{"complaint naming a confirm link", fixture(t, "arf.eml", "{{UNSUB}}", strings.Replace(e.unsub(3), "/u/", "/c/", 1)), false, false, "", 3},
		{"not-spam report", fixture(t, "arf.eml", "{{UNSUB}}", e.unsub(3), "{{FEEDBACK}}", "not-spam"), false, false, "", 3},
		{"vacation reply to the VERP address", fixture(t, "vacation.eml", "{{VERP}}", e.verp(4)), false, false, "", 4},
		{"unrelated mail to the VERP address", fixture(t, "unrelated.eml", "{{VERP}}", e.verp(4)), false, false, "", 4},
		{"success DSN", fixture(t, "success-dsn.eml", "{{VERP}}", e.verp(4)), false, false, "", 4},
		{"not MIME at all", []byte("\x00\x01garbage"), false, false, "", 4},
	}
	for _, tt := range tests {
		out, err := e.p.Process(ctx, tt.raw)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if out.Matched != tt.matched || out.First != tt.first || out.Changed != tt.changed {
			t.Errorf("%s: matched %v first %v changed %q, want %v %v %q", tt.name, out.Matched, out.First, out.Changed, tt.matched, tt.first, tt.changed)
		}
		if tt.matched && (out.Campaign != e.c.ID || out.Recipient != int64(tt.idx)) {
			t.Errorf("%s: names %s/%d, want %s/%d", tt.name, out.Campaign, out.Recipient, e.c.ID, tt.idx)
		}
	}
	want := map[int]repermit.State{0: repermit.StateBounced, 1: repermit.StateBounced, 2: repermit.StateUnsubscribed,
		3: repermit.StateSent, 4: repermit.StateSent, 5: repermit.StateSent, 6: repermit.StateBounced, 7: repermit.StateSent}
	for idx, st := range want {
		if got := e.state(t, idx); got != st {
			t.Errorf("recipient %d is %s, want %s", idx, got, st)
		}
	}
	stats, err := e.store.Stats(ctx, e.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantFB := map[string]int64{"bounced:dsn": 2, "soft:dsn": 3, "complaint:arf": 1}
	for k, v := range wantFB {
		if stats.Feedback[k] != v {
			t.Errorf("feedback %s = %d, want %d (all: %v)", k, stats.Feedback[k], v, stats.Feedback)
		}
	}
	if stats.Counts[repermit.StateBounced] != 3 || stats.Counts[repermit.StateUnsubscribed] != 1 || stats.Counts[repermit.StateSent] != 4 {
		t.Errorf("counts %v", stats.Counts)
	}
	suppressed, err := e.store.IsSuppressed(ctx, []string{repermit.AddressHash("a0@example.org"), repermit.AddressHash("a2@example.org"), repermit.AddressHash("a4@example.org")})
	if err != nil {
		t.Fatal(err)
	}
	if !suppressed[0] || !suppressed[1] || suppressed[2] {
		t.Errorf("suppressed a0, a2, a4 = %v, want bounced and complainer only", suppressed)
	}
}

func TestSoftLimitIsConfigurable(t *testing.T) {
	e := newEnv(t, 1)
	e.p.SoftLimit = 1
	out, err := e.p.Process(context.Background(), fixture(t, "delayed-dsn.eml", "{{VERP}}", e.verp(0)))
	if err != nil {
		t.Fatal(err)
	}
	if out.Changed != repermit.StateBounced || e.state(t, 0) != repermit.StateBounced {
		t.Errorf("with SoftLimit 1 one soft bounce gives %q, recipient %s; want bounced", out.Changed, e.state(t, 0))
	}
}

func TestParseIMAPURL(t *testing.T) {
	good := []struct {
		raw  string
		want bounces.MailboxConfig
	}{
		{"imap://u:p@mail.example/Bounces?tls=starttls&processed=Done", bounces.MailboxConfig{Host: "mail.example", TLS: "starttls", Username: "u", Password: "p", Mailbox: "Bounces", Processed: "Done"}},
		{"imap://u%40x:p@127.0.0.1:1143?tls=none&batch=2", bounces.MailboxConfig{Host: "127.0.0.1", Port: 1143, TLS: "none", Username: "u@x", Password: "p", Batch: 2}},
		{"imap://u@mail.example", bounces.MailboxConfig{Host: "mail.example", TLS: "tls", Username: "u"}},
	}
	for _, tt := range good {
		got, err := bounces.ParseIMAPURL(tt.raw)
		if err != nil || got != tt.want {
			t.Errorf("ParseIMAPURL(%q) = %+v, %v; want %+v", tt.raw, got, err, tt.want)
		}
	}
	bad := []string{"http://u@h", "imap://h", "imap://u:s3cret@h:99999", "imap://u:s3cret@h?tls=ssl", "imap://u@h?timeout=soon", "imap://u@h?batch=0", "imap://u:s3cret@:143"}
	for _, raw := range bad {
		_, err := bounces.ParseIMAPURL(raw)
		if repermit.ErrorCode(err) != repermit.EINVALID {
			t.Errorf("ParseIMAPURL(%q) = %v, want EINVALID", raw, err)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
}
