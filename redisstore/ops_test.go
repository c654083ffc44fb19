package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// TestDomainPenaltyIsExtendedNeverShortened: a 421 from a domain holds its
// mail back for every campaign; a shorter penalty never cuts a longer one.
func TestDomainPenaltyIsExtendedNeverShortened(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		domain  string
		d       time.Duration
		atLeast time.Duration // gmail.com's penalty afterwards
	}{
		{"first penalty", "gmail.com", time.Minute, 50 * time.Second},
		{"a shorter one keeps the longer", "gmail.com", time.Second, 50 * time.Second},
		{"a longer one extends", "gmail.com", time.Hour, 50 * time.Minute},
		{"no domain is ignored", "", time.Hour, 50 * time.Minute},
		{"no duration is ignored", "web.de", 0, 50 * time.Minute},
	}
	for _, tt := range tests {
		if err := s.PenalizeDomain(ctx, tt.domain, tt.d); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, err := s.DomainPenalties(ctx, []string{"gmail.com", "web.de"})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got[0] < tt.atLeast || got[1] != 0 {
			t.Errorf("%s: penalties %v, want gmail.com >= %v and web.de none", tt.name, got, tt.atLeast)
		}
	}
	if got, err := s.DomainPenalties(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("penalties of no domains = %v, %v", got, err)
	}
}

// TestRateLimitIsSharedByWorkers: two workers (two stores on one Redis)
// draw from one limiter per campaign and scope.
func TestRateLimitIsSharedByWorkers(t *testing.T) {
	s1, r := newStore(t)
	s2 := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	limit := redisstore.RateLimit{Rate: 10, Period: time.Second, Burst: 5}
	tests := []struct {
		name      string
		s         *redisstore.Store
		campaign  string
		scope     string
		n         int
		allowed   int
		mustRetry bool
	}{
		{"the burst goes at once", s1, "camp", "campaign", 8, 5, false},
		{"the other worker finds it used", s2, "camp", "campaign", 1, 0, true},
		{"another scope has its own", s2, "camp", "d:gmail.com", 2, 2, false},
		{"another campaign has its own", s2, "other", "campaign", 5, 5, false},
	}
	for _, tt := range tests {
		a, err := tt.s.AllowAtMost(ctx, tt.campaign, tt.scope, limit, tt.n)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if a.Allowed != tt.allowed || (a.RetryAfter > 0) != tt.mustRetry || a.RetryAfter > time.Second {
			t.Errorf("%s: %+v, want %d allowed (retry later: %v)", tt.name, a, tt.allowed, tt.mustRetry)
		}
	}
}

// TestQueueConnectionIsTheStores: asynq enqueues, counts and runs tasks
// through the store's connection.
func TestQueueConnectionIsTheStores(t *testing.T) {
	s, r := newStore(t)
	if d, err := s.QueueDepth(r.Prefix); err != nil || d != (redisstore.QueueDepth{}) {
		t.Errorf("depth of a queue nothing was enqueued on = %+v, %v; want empty", d, err)
	}
	c := s.Enqueuer()
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask("test:later", nil), asynq.Queue(r.Prefix), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(asynq.NewTask("test:now", nil), asynq.Queue(r.Prefix)); err != nil {
		t.Fatal(err)
	}
	d, err := s.QueueDepth(r.Prefix)
	if err != nil || d.Pending != 1 || d.Scheduled != 1 {
		t.Fatalf("depth = %+v, %v; want 1 pending, 1 scheduled", d, err)
	}
	ran := make(chan struct{}, 1)
	srv := s.QueueServer(asynq.Config{Queues: map[string]int{r.Prefix: 1}, TaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("test:now", func(context.Context, *asynq.Task) error { ran <- struct{}{}; return nil })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the server on the store's connection ran no task in 10 s")
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("the store's connection after asynq used it: %v", err)
	}
}

// TestOpenOwnsItsConnection: Open connects and checks Redis, Close closes
// what Open opened; a bad URL is EINVALID and never repeats the password,
// a server that does not answer is EUNAVAILABLE.
func TestOpenOwnsItsConnection(t *testing.T) {
	r := redistest.New(t)
	ctx := context.Background()
	s, err := redisstore.Open(ctx, r.URL, r.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if s.Prefix() != r.Prefix || s.Addr() == "" || strings.Contains(s.Addr(), "@") {
		t.Errorf("prefix %q, addr %q", s.Prefix(), s.Addr())
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); repermit.ErrorCode(err) != repermit.EUNAVAILABLE {
		t.Errorf("ping after Close = %v, want EUNAVAILABLE", err)
	}
	if err := redisstore.New(r.Client, r.Prefix).Close(); err != nil || r.Client.Ping(ctx).Err() != nil {
		t.Errorf("Close of a store from New closed the caller's client: %v", err)
	}

	_, err = redisstore.Open(ctx, "redis://user:s3cret-pw@127.0.0.1:notaport/0", "p")
	if repermit.ErrorCode(err) != repermit.EINVALID || strings.Contains(repermit.ErrorMessage(err), "s3cret-pw") {
		t.Errorf("bad URL: %v (code %s)", err, repermit.ErrorCode(err))
	}
	_, err = redisstore.Open(ctx, "redis://127.0.0.1:1/0", "p")
	if repermit.ErrorCode(err) != repermit.EUNAVAILABLE {
		t.Errorf("no server: %v, want EUNAVAILABLE", err)
	}
}

// TestRedisAwayIsUnavailable: every kind of call reports a Redis that does
// not answer as EUNAVAILABLE, which web maps to 503 and the worker to a
// fast retry.
func TestRedisAwayIsUnavailable(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	defer rdb.Close()
	s := redisstore.New(rdb, "away")
	ctx := context.Background()
	r := &repermit.Recipient{Campaign: "camp", Index: 0, Email: "a@example.com"}
	calls := map[string]func() error{
		"Ping":     func() error { return s.Ping(ctx) },
		"Campaign": func() error { _, err := s.Campaign(ctx, "camp"); return err },
		"CampaignBySeq": func() error {
			_, err := s.CampaignBySeq(ctx, 1)
			return err
		},
		"Campaigns":       func() error { _, err := s.Campaigns(ctx); return err },
		"Stats":           func() error { _, err := s.Stats(ctx, "camp"); return err },
		"Cursor":          func() error { _, err := s.Cursor(ctx, "camp", "feed"); return err },
		"AdvanceCursor":   func() error { _, err := s.AdvanceCursor(ctx, "camp", "feed", 0, 1); return err },
		"Imported":        func() error { _, err := s.Imported(ctx, "camp"); return err },
		"SetBeat":         func() error { return s.SetBeat(ctx, "camp", "feed", t0) },
		"Beat":            func() error { _, err := s.Beat(ctx, "camp", "feed"); return err },
		"PenalizeDomain":  func() error { return s.PenalizeDomain(ctx, "gmail.com", time.Minute) },
		"DomainPenalties": func() error { _, err := s.DomainPenalties(ctx, []string{"gmail.com"}); return err },
		"AllowAtMost": func() error {
			_, err := s.AllowAtMost(ctx, "camp", "campaign", redisstore.RateLimit{Rate: 1, Period: time.Second, Burst: 1}, 1)
			return err
		},
		"ReadForSend":    func() error { _, _, err := s.ReadForSend(ctx, "camp", []int64{0}); return err },
		"ClaimBatch":     func() error { _, err := s.ClaimBatch(ctx, "camp", []int64{0}, 1, t0, time.Minute); return err },
		"Bounce":         func() error { return s.Bounce(ctx, r, t0) },
		"Suppress":       func() error { return s.Suppress(ctx, r, t0) },
		"IsSuppressed":   func() error { _, err := s.IsSuppressed(ctx, []string{"h"}); return err },
		"AddSuppression": func() error { return s.AddSuppression(ctx, redisstore.ReasonDeclined, "camp", t0, "h") },
		"Suppressions": func() error {
			return s.Suppressions(ctx, "", func(redisstore.SuppressionEntry) error { return nil })
		},
		"LedgerHead": func() error { _, _, err := s.LedgerHead(ctx, "camp"); return err },
		"Record": func() error {
			_, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: 0, State: repermit.StateConfirmed, At: t0, Current: &repermit.Recipient{Campaign: "camp", Index: 0, State: repermit.StateSent}})
			return err
		},
		"BeginImport": func() error {
			_, err := s.BeginImport(ctx, repermit.Campaign{ID: "camp"}, t0)
			return err
		},
		"SetStatus":       func() error { return s.SetStatus(ctx, "camp", repermit.StatusPaused, repermit.StatusRunning) },
		"Timeline":        func() error { _, err := s.Timeline(ctx, "camp"); return err },
		"PurgeRecipients": func() error { return s.PurgeRecipients(ctx, "camp") },
		"Recipient":       func() error { _, err := s.Recipient(ctx, "camp", 0); return err },
		"Bucket":          func() error { _, err := s.Bucket(ctx, "camp", 0); return err },
		"MarkSent":        func() error { return s.MarkSent(ctx, "camp", 0, 1, t0) },
		"MarkSentBatch":   func() error { _, err := s.MarkSentBatch(ctx, "camp", []int64{0}, 1, t0); return err },
		"RenewBatch": func() error {
			_, err := s.RenewBatch(ctx, "camp", []int64{0}, 1, t0, time.Minute)
			return err
		},
		"Release":      func() error { return s.Release(ctx, "camp", 0, 1, t0) },
		"ExpireBucket": func() error { _, _, err := s.ExpireBucket(ctx, "camp", 0, t0); return err },
		"Unmailed": func() error {
			_, _, err := s.Unmailed(ctx, "camp", 0, 1, 128, 1, t0)
			return err
		},
		"DrainSuppression":   func() error { return s.DrainSuppression(ctx, "camp") },
		"MigrateSuppression": func() error { _, err := s.MigrateSuppression(ctx); return err },
		"Ledger": func() error {
			return s.Ledger(ctx, "camp", func(repermit.ConsentRecord, string) error { return nil })
		},
		"RawLedger": func() error {
			return s.RawLedger(ctx, "camp", -1, func([]byte, string) error { return nil })
		},
		"LedgerAfter": func() error {
			return s.LedgerAfter(ctx, "camp", "", -1, func([]byte, string) error { return nil })
		},
		"RecordsOf":    func() error { _, err := s.RecordsOf(ctx, "camp", "subject"); return err },
		"LedgerIsLog":  func() error { _, err := s.LedgerIsLog(ctx, "camp"); return err },
		"LedgerSize":   func() error { _, err := s.LedgerSize(ctx, "camp"); return err },
		"SyncTree":     func() error { _, _, err := s.SyncTree(ctx, "camp"); return err },
		"ReadHashes":   func() error { _, err := s.HashReader(ctx, "camp").ReadHashes([]int64{0}); return err },
		"Checkpoints":  func() error { _, err := s.Checkpoints(ctx, "camp"); return err },
		"SubjectKey":   func() error { _, err := s.SubjectKey(ctx); return err },
		"Wording":      func() error { _, _, err := s.Wording(ctx, "camp", "sum"); return err },
		"Witnessed":    func() error { _, err := s.Witnessed(ctx, "camp"); return err },
		"SetWitnessed": func() error { return s.SetWitnessed(ctx, "camp", 1) },
		"AddCheckpoint": func() error {
			_, err := s.AddCheckpoint(ctx, "camp", 1, t0, time.Minute, "note")
			return err
		},
		"Webhook": func() error { _, err := s.Webhook(ctx, "camp", 0); return err },
		"WebhookDelivered": func() error {
			return s.WebhookDelivered(ctx, "camp", 0, redisstore.WebhookState{Position: "1-0", Delivered: 1})
		},
		"WebhookItems":  func() error { _, err := s.WebhookItems(ctx, "camp", redisstore.WebhookState{}, 10); return err },
		"WebhookTotals": func() error { _, _, err := s.WebhookTotals(ctx, "camp"); return err },
		"TrimEvents":    func() error { return s.TrimEvents(ctx, "camp", 1) },
		"EventsOn":      func() error { _, err := s.EventsOn(ctx, "camp"); return err },
		"SubjectOf": func() error {
			_, err := s.SubjectOf(ctx, &repermit.Recipient{Campaign: "camp", LedgerID: "1-0"})
			return err
		},
		"BounceFrom": func() error {
			return s.BounceFrom(ctx, &repermit.Recipient{Campaign: "camp", Index: 1, LedgerID: "1-0"}, t0, "smtp")
		},
		"WebhookFailed": func() error { return s.WebhookFailed(ctx, "camp", 0) },
		"Deployment":    func() error { _, err := s.Deployment(ctx); return err },
		"RecordFeedback": func() error {
			_, _, err := s.RecordFeedback(ctx, redisstore.Feedback{Campaign: "camp", Key: "k", Kind: redisstore.FeedbackHard, Source: "dsn"})
			return err
		},
		"Waves":       func() error { _, err := s.Waves(ctx, "camp"); return err },
		"MarkWaveFed": func() error { return s.MarkWaveFed(ctx, "camp", 1, t0) },
		"StopWaves": func() error {
			_, err := s.StopWaves(ctx, "camp", redisstore.WaveStop{Wave: 1, NextWave: 2})
			return err
		},
		"Resume": func() error { return s.Resume(ctx, "camp", false) },
		"WavesReport": func() error {
			_, err := s.WavesReport(ctx, &repermit.Campaign{ID: "camp", Waves: &repermit.Waves{Pilot: 1}})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if repermit.ErrorCode(err) != repermit.EUNAVAILABLE {
			t.Errorf("%s with Redis away: %v (code %q), want EUNAVAILABLE", name, err, repermit.ErrorCode(err))
			continue
		}
		if !strings.Contains(err.Error(), "redis") || repermit.ErrorMessage(err) == "internal error" {
			t.Errorf("%s: error %q / message %q name neither the cause nor a user-facing reason", name, err, repermit.ErrorMessage(err))
		}
	}
}

// TestSuppressionListAcrossCampaigns: what a campaign suppresses, and what
// is added by hand, is listed per campaign and blocks the address.
func TestSuppressionListAcrossCampaigns(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 3)
	rs, err := s.Bucket(ctx, "camp", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Suppress(ctx, rs[0], t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Bounce(ctx, rs[1], t0); !errors.Is(err, redisstore.ErrNotAllowed) {
		t.Errorf("bounce of a recipient never mailed: %v, want ErrNotAllowed", err)
	}
	if err := claim(s, "camp", 1, 1, t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Bounce(ctx, rs[1], t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Bounce(ctx, rs[1], t0); !errors.Is(err, redisstore.ErrNotAllowed) {
		t.Errorf("second bounce: %v, want ErrNotAllowed", err)
	}
	if err := s.AddSuppression(ctx, redisstore.ReasonUnsubscribed, "older", t0, repermit.AddressHash("x@example.com")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSuppression(ctx, redisstore.ReasonUnsubscribed, "older", t0); err != nil {
		t.Errorf("adding nothing: %v", err)
	}
	list := func(id string) map[string]string {
		out := make(map[string]string)
		err := s.Suppressions(ctx, id, func(e redisstore.SuppressionEntry) error {
			if !e.At.Equal(t0) {
				t.Errorf("entry %+v: time %v, want %v", e, e.At, t0)
			}
			out[e.Hash] = e.Reason + "|" + e.Campaign
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	bounced := repermit.AddressHash("a1@example.com")
	if got := list("camp"); len(got) != 1 || got[bounced] != redisstore.ReasonBounced+"|camp" {
		t.Errorf("camp's suppressions %v, want only a1 bounced (a suppressed recipient was on the list already)", got)
	}
	if got := list(""); len(got) != 2 {
		t.Errorf("all suppressions %v, want 2", got)
	}
	stop := errors.New("stop")
	if err := s.Suppressions(ctx, "", func(redisstore.SuppressionEntry) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Suppressions passes on fn's error: %v", err)
	}
	got, err := s.IsSuppressed(ctx, []string{bounced, repermit.AddressHash("x@example.com"), repermit.AddressHash("a2@example.com")})
	if err != nil || !got[0] || !got[1] || got[2] {
		t.Errorf("IsSuppressed = %v, %v; want true true false", got, err)
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{repermit.StateSuppressed: 1, repermit.StateBounced: 1, repermit.StatePending: 1})

	// The next campaign's import skips them.
	imp, err := s.BeginImport(ctx, repermit.Campaign{ID: "next", From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	defer imp.Abort(ctx)
	got, err = imp.Suppressed(ctx, []string{bounced, repermit.AddressHash("a2@example.com")})
	if err != nil || !got[0] || got[1] {
		t.Errorf("the next import's Suppressed = %v, %v; want true false", got, err)
	}
}

// TestCampaignLookups: by id, by token sequence, listed; cursors move
// only from where the caller saw them; chain heartbeats.
func TestCampaignLookups(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	a := launch(t, s, "a", 2)
	launch(t, s, "b", 1)
	ids, err := s.Campaigns(ctx)
	if err != nil || strings.Join(ids, ",") != "a,b" {
		t.Errorf("Campaigns = %v, %v", ids, err)
	}
	c, err := s.CampaignBySeq(ctx, a.Seq)
	if err != nil || c.ID != "a" {
		t.Errorf("CampaignBySeq(%d) = %v, %v", a.Seq, c, err)
	}
	if _, err := s.CampaignBySeq(ctx, 999); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("unknown seq: %v", err)
	}
	if n, err := s.Imported(ctx, "a"); err != nil || n != 2 {
		t.Errorf("Imported = %d, %v", n, err)
	}
	if _, err := s.Imported(ctx, "nope"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("Imported of an unknown campaign: %v", err)
	}
	if _, _, err := s.LedgerHead(ctx, "nope"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("LedgerHead of an unknown campaign: %v", err)
	}
	if head, n, err := s.LedgerHead(ctx, "a"); err != nil || head != "" || n != 0 {
		t.Errorf("LedgerHead of a campaign without answers = %q %d %v", head, n, err)
	}

	steps := []struct {
		from, to int64
		moved    bool
	}{{0, 128, true}, {0, 256, false}, {128, 256, true}}
	for _, st := range steps {
		moved, err := s.AdvanceCursor(ctx, "a", "feed", st.from, st.to)
		if err != nil || moved != st.moved {
			t.Errorf("AdvanceCursor %d->%d = %v, %v; want %v", st.from, st.to, moved, err, st.moved)
		}
	}
	if cur, err := s.Cursor(ctx, "a", "feed"); err != nil || cur != 256 {
		t.Errorf("Cursor = %d, %v; want 256", cur, err)
	}
	if cur, err := s.Cursor(ctx, "a", "remind:1"); err != nil || cur != 0 {
		t.Errorf("an unset cursor = %d, %v; want 0", cur, err)
	}

	if at, err := s.Beat(ctx, "a", "feed"); err != nil || !at.IsZero() {
		t.Errorf("Beat before any = %v, %v", at, err)
	}
	if err := s.SetBeat(ctx, "a", "feed", t0); err != nil {
		t.Fatal(err)
	}
	if at, err := s.Beat(ctx, "a", "feed"); err != nil || !at.Equal(t0) {
		t.Errorf("Beat = %v, %v; want %v", at, err, t0)
	}
}

// TestBaselinesWriteOnlyUnderTheirPrefix: the bench's raw-Redis baselines
// pack, expire and delete under their own prefix, and a store made by
// WithPrefix shares the connection without sharing keys.
func TestBaselinesWriteOnlyUnderTheirPrefix(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 1)
	raw := r.Prefix + ":raw:"
	const n = 300
	row := func(i int) (string, string, string, map[string]string) {
		return "reader@example.com", "Reader", "en", nil
	}
	if _, err := s.BaselineImport(ctx, raw, n, row); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BaselineExpire(ctx, raw, n); err != nil {
		t.Fatal(err)
	}
	if redistest.Real() { // miniredis has no MEMORY USAGE
		mem, err := s.MemoryUnder(ctx, raw+"*")
		if err != nil || mem <= 0 {
			t.Errorf("MemoryUnder = %d, %v", mem, err)
		}
	}
	if err := s.DeleteMatching(ctx, raw+"*"); err != nil {
		t.Fatal(err)
	}
	for _, k := range r.Keys(t) {
		if strings.HasPrefix(k, raw) {
			t.Errorf("key %s left after DeleteMatching", k)
		}
	}
	other := s.WithPrefix(r.Prefix + ":other")
	if _, err := other.Campaign(ctx, "camp"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("a store under another prefix sees camp: %v", err)
	}
	if _, err := s.Campaign(ctx, "camp"); err != nil {
		t.Errorf("the original store lost camp: %v", err)
	}
}
