package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/token"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

const adminToken = "admin-secret-for-tests"

// harness is one test's web server over one launched campaign whose
// recipients have all been mailed. Recipient i has locale locales[i].
type harness struct {
	t        testing.TB
	r        *redistest.Redis
	store    *redisstore.Store
	signer   *token.Signer
	srv      *Server
	reg      *prometheus.Registry
	c        repermit.Campaign
	now      atomic.Pointer[time.Time]
	commands atomic.Int64
}

var locales = []string{"de", "en", "", "fr", "de-AT"}

func newHarness(t testing.TB, opts ...func(*Config)) *harness {
	t.Helper()
	return newCampaignHarness(t, repermit.Campaign{}, locales, opts...)
}

// newCampaignHarness is newHarness over campaign c (the default campaign
// if c has no ID) with one recipient per entry of locs.
func newCampaignHarness(t testing.TB, c repermit.Campaign, locs []string, opts ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, r: redistest.New(t)}
	h.store = redisstore.New(h.r.Client, h.r.Prefix)
	h.r.Client.AddHook(countHook{&h.commands})
	h.setNow(t0.Add(time.Hour))
	signer, err := token.NewSigner([][]byte{[]byte("0123456789abcdef0123456789abcdef-test")})
	if err != nil {
		t.Fatal(err)
	}
	h.signer = signer
	if c.ID == "" {
		h.c = launch(t, h.store, "camp", len(locs), func(i int) string { return locs[i] })
	} else {
		h.c = launchCampaign(t, h.store, c, len(locs), func(i int) string { return locs[i] })
	}
	h.reg = prometheus.NewRegistry()
	cfg := Config{
		Store: h.store, Signer: signer, AdminToken: adminToken,
		Now:      func() time.Time { return *h.now.Load() },
		Registry: h.reg,
		Logger:   discardLogger(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) setNow(t time.Time) { h.now.Store(&t) }

// launch imports n recipients and marks each one mailed.
func launch(t testing.TB, s *redisstore.Store, id string, n int, locale func(int) string) repermit.Campaign {
	t.Helper()
	c := repermit.Campaign{ID: id, From: "ACME News <news@acme.example>", Subject: "ACME News",
		StartAt: t0, Deadline: t0.Add(24 * time.Hour), Topics: []string{"yoga", "events"},
		Controller: testController}
	return launchCampaign(t, s, c, n, locale)
}

var testController = repermit.Controller{
	Name: "ACME Handels GmbH", Address: "Hauptstraße 1, 10115 Berlin, Germany",
	Contact: "privacy@acme.example", PrivacyURL: "https://acme.example/privacy",
}

// launchCampaign imports n recipients of campaign c and marks each one
// mailed.
func launchCampaign(t testing.TB, s *redisstore.Store, c repermit.Campaign, n int, locale func(int) string) repermit.Campaign {
	t.Helper()
	ctx := context.Background()
	id := c.ID
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatalf("BeginImport: %v", err)
	}
	for i := 0; i < n; i++ {
		if err := imp.Add(ctx, fmt.Sprintf("r%d@example.com", i), fmt.Sprintf("Name %d", i), locale(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: id, Imported: int64(n)}); err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < int64(n); i++ {
		if errs, err := s.ClaimBatch(ctx, id, []int64{i}, 1, t0, time.Minute); err != nil || errs[0] != nil {
			t.Fatal(errs, err)
		}
		if err := s.MarkSent(ctx, id, i, 1, t0); err != nil {
			t.Fatal(err)
		}
	}
	return imp.Campaign()
}

func (h *harness) token(p token.Purpose, idx uint32) string {
	return h.signer.Sign(token.Claims{Purpose: p, Campaign: h.c.ID, CampaignSeq: h.c.Seq, Recipient: idx, Deadline: h.c.Deadline})
}

func (h *harness) confirmPath(idx uint32) string { return "/c/" + h.token(token.Confirm, idx) }
func (h *harness) unsubPath(idx uint32) string   { return "/u/" + h.token(token.Unsubscribe, idx) }

// do serves one request in process; httptest requests come from
// 192.0.2.1:1234.
func (h *harness) do(req *http.Request) *httptest.ResponseRecorder {
	h.t.Helper()
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	return w
}

func (h *harness) get(path string) *httptest.ResponseRecorder {
	h.t.Helper()
	return h.do(httptest.NewRequest(http.MethodGet, path, nil))
}

func (h *harness) postForm(path string, form url.Values) *httptest.ResponseRecorder {
	h.t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "Mozilla/5.0 (test)")
	return h.do(req)
}

func confirmForm(choice string, topics ...string) url.Values {
	v := url.Values{"choice": {choice}}
	for _, t := range topics {
		v.Add("topic", t)
	}
	return v
}

func (h *harness) recipient(idx int64) *repermit.Recipient {
	h.t.Helper()
	rec, err := h.store.Recipient(context.Background(), h.c.ID, idx)
	if err != nil {
		h.t.Fatalf("Recipient %d: %v", idx, err)
	}
	return rec
}

func (h *harness) ledger() []repermit.ConsentRecord {
	h.t.Helper()
	var recs []repermit.ConsentRecord
	if err := h.store.Ledger(context.Background(), h.c.ID, func(r repermit.ConsentRecord, _ string) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return recs
}

// dump renders every key under the test's prefix with its full value, so
// that two dumps differ if anything at all was written.
func (h *harness) dump() string {
	h.t.Helper()
	ctx := context.Background()
	keys := h.r.Keys(h.t)
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		typ, err := h.r.Client.Type(ctx, k).Result()
		if err != nil {
			h.t.Fatal(err)
		}
		var v any
		switch typ {
		case "hash":
			v, err = h.r.Client.HGetAll(ctx, k).Result()
		case "set":
			var m []string
			m, err = h.r.Client.SMembers(ctx, k).Result()
			sort.Strings(m)
			v = m
		case "zset":
			v, err = h.r.Client.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "stream":
			v, err = h.r.Client.XRange(ctx, k, "-", "+").Result()
		case "string":
			v, err = h.r.Client.Get(ctx, k).Result()
		default:
			v = "?"
		}
		if err != nil {
			h.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s %v\n", k, typ, v)
	}
	return b.String()
}

// countHook counts every command sent to Redis, pipelined ones included.
type countHook struct{ n *atomic.Int64 }

func (c countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func wantStatus(t testing.TB, what string, w *httptest.ResponseRecorder, code int) {
	t.Helper()
	if w.Code != code {
		t.Fatalf("%s: status %d, want %d\n%s", what, w.Code, code, w.Body.String())
	}
}
