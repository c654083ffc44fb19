package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// launch imports n recipients a0@example.com … and commits the campaign.
func launch(t *testing.T, s *redisstore.Store, id string, n int) repermit.Campaign {
	t.Helper()
	ctx := context.Background()
	c := repermit.Campaign{ID: id, From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour), Topics: []string{"yoga", "events"}}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatalf("BeginImport: %v", err)
	}
	for i := 0; i < n; i++ {
		if err := imp.Add(ctx, fmt.Sprintf("a%d@example.com", i), fmt.Sprintf("Name %d", i), "de", map[string]string{"city": "Köln"}); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: id, Imported: int64(n)}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return imp.Campaign()
}

func newStore(t *testing.T) (*redisstore.Store, *redistest.Redis) {
	t.Helper()
	r := redistest.New(t)
	return redisstore.New(r.Client, r.Prefix), r
}

func assertCounts(t *testing.T, s *redisstore.Store, id string, want map[repermit.State]int64) {
	t.Helper()
	st, err := s.Stats(context.Background(), id)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	for _, state := range repermit.States() {
		if st.Counts[state] != want[state] {
			t.Errorf("count %s = %d, want %d (all: %v)", state, st.Counts[state], want[state], st.Counts)
		}
	}
	if st.Counts.Total() != st.Imported {
		t.Errorf("counts add up to %d, imported %d", st.Counts.Total(), st.Imported)
	}
}

func TestImportRoundTrip(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	c := launch(t, s, "camp", 300)
	if c.Seq == 0 {
		t.Fatal("launch assigned no sequence number")
	}
	got, err := s.Campaign(ctx, "camp")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != repermit.StatusRunning || !got.Deadline.Equal(c.Deadline) {
		t.Errorf("campaign = %+v", got)
	}
	bySeq, err := s.CampaignBySeq(ctx, c.Seq)
	if err != nil || bySeq.ID != "camp" {
		t.Fatalf("CampaignBySeq(%d) = %v, %v", c.Seq, bySeq, err)
	}
	r, err := s.Recipient(ctx, "camp", 299)
	if err != nil {
		t.Fatal(err)
	}
	if r.Email != "a299@example.com" || r.Name != "Name 299" || r.Locale != "de" || r.Extra["city"] != "Köln" || r.State != repermit.StatePending {
		t.Errorf("recipient 299 = %+v", r)
	}
	if _, err := s.Recipient(ctx, "camp", 300); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("recipient past the end: err = %v, want ENOTFOUND", err)
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{repermit.StatePending: 300})
}

func TestLaunchingAnExistingIDIsRefused(t *testing.T) {
	s, r := newStore(t)
	launch(t, s, "camp", 10)
	before := len(r.Keys(t))
	_, err := s.BeginImport(context.Background(), repermit.Campaign{ID: "camp"}, t0)
	if repermit.ErrorCode(err) != repermit.ECONFLICT {
		t.Fatalf("second BeginImport: err = %v, want ECONFLICT", err)
	}
	if after := len(r.Keys(t)); after != before {
		t.Errorf("keys went from %d to %d", before, after)
	}
}

func TestAbortedImportLeavesNothing(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	imp, err := s.BeginImport(ctx, repermit.Campaign{ID: "half", Deadline: t0.Add(time.Hour)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20000; i++ {
		if err := imp.Add(ctx, fmt.Sprintf("x%d@example.com", i), "", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Campaign(ctx, "half"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("campaign visible before commit: %v", err)
	}
	if err := imp.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := r.Keys(t); len(keys) != 1 || !strings.HasSuffix(keys[0], ":seq") {
		t.Errorf("keys left after abort: %v", keys)
	}
	// The id is free again.
	launch(t, s, "half", 1)
}

// claim is ClaimBatch of one recipient, with the call's error (campaign
// not running) or else the recipient's.
func claim(s *redisstore.Store, id string, idx int64, step int, now time.Time, lease time.Duration) error {
	errs, err := s.ClaimBatch(context.Background(), id, []int64{idx}, step, now, lease)
	if err != nil {
		return err
	}
	return errs[0]
}

func TestClaimIsOncePerStep(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 3)
	const lease = time.Minute

	if err := claim(s, "camp", 1, 1, t0, lease); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := claim(s, "camp", 1, 1, t0.Add(time.Second), lease); !errors.Is(err, redisstore.ErrBusy) {
		t.Errorf("duplicate claim inside the lease: err = %v, want ErrBusy", err)
	}
	// A crashed worker's lease runs out; the retry takes the step over.
	if err := claim(s, "camp", 1, 1, t0.Add(2*lease), lease); err != nil {
		t.Errorf("claim after the lease: %v", err)
	}
	if err := s.MarkSent(ctx, "camp", 1, 1, t0); err != nil {
		t.Fatal(err)
	}
	if err := claim(s, "camp", 1, 1, t0, lease); !errors.Is(err, redisstore.ErrNotAllowed) {
		t.Errorf("claim of a mailed step: err = %v, want ErrNotAllowed", err)
	}
	if err := s.MarkSent(ctx, "camp", 1, 1, t0); !errors.Is(err, redisstore.ErrNotAllowed) {
		t.Errorf("second MarkSent: err = %v, want ErrNotAllowed", err)
	}
	// Reminder: step 2, once.
	if err := claim(s, "camp", 1, 2, t0, lease); err != nil {
		t.Fatalf("reminder claim: %v", err)
	}
	if err := s.Release(ctx, "camp", 1, 2, t0); err != nil {
		t.Fatal(err)
	}
	if err := claim(s, "camp", 1, 2, t0.Add(time.Second), lease); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	if err := s.MarkSent(ctx, "camp", 1, 2, t0); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Recipient(ctx, "camp", 1)
	if got.State != repermit.StateSent || got.Step != 2 {
		t.Errorf("after reminder: state %s step %d", got.State, got.Step)
	}
	// A reminder to a pending recipient (never mailed) is refused.
	if err := claim(s, "camp", 0, 2, t0, lease); !errors.Is(err, redisstore.ErrNotAllowed) {
		t.Errorf("reminder to a pending recipient: err = %v", err)
	}
	if err := claim(s, "camp", 7, 1, t0, lease); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("claim of a recipient that does not exist: err = %v, want ENOTFOUND", err)
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{repermit.StatePending: 2, repermit.StateSent: 1})
}

func TestClaimStopsWhenPausedAndAtDeadline(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	c := launch(t, s, "camp", 2)
	if err := s.SetStatus(ctx, "camp", repermit.StatusPaused, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	if err := claim(s, "camp", 0, 1, t0, time.Minute); !errors.Is(err, redisstore.ErrNotRunning) {
		t.Errorf("claim while paused: err = %v", err)
	}
	if err := s.SetStatus(ctx, "camp", repermit.StatusRunning, repermit.StatusPaused); err != nil {
		t.Fatal(err)
	}
	if err := claim(s, "camp", 0, 1, c.Deadline, time.Minute); !errors.Is(err, redisstore.ErrNotRunning) {
		t.Errorf("claim at the deadline: err = %v", err)
	}
	if err := s.SetStatus(ctx, "camp", repermit.StatusRunning, repermit.StatusPaused); repermit.ErrorCode(err) != repermit.ECONFLICT && err != nil {
		t.Errorf("resume of a running campaign: %v", err)
	}
}

func TestAnswersAndLedger(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 4)
	for i := int64(0); i < 4; i++ {
		if err := claim(s, "camp", i, 1, t0, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSent(ctx, "camp", i, 1, t0); err != nil {
			t.Fatal(err)
		}
	}
	answer := func(idx int64, st repermit.State, topics ...string) redisstore.AnswerResult {
		t.Helper()
		res, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: idx, State: st, Topics: topics, At: t0.Add(time.Minute), IP: "192.0.2.0", UserAgent: "test", WordingSHA256: "abc"})
		if err != nil {
			t.Fatalf("answer %d %s: %v", idx, st, err)
		}
		return res
	}
	if res := answer(0, repermit.StateConfirmed, "yoga", "events"); !res.Changed || res.Recipient.State != repermit.StateConfirmed || len(res.Recipient.Topics) != 2 {
		t.Errorf("confirm: %+v", res)
	}
	if res := answer(0, repermit.StateConfirmed, "events", "yoga"); res.Changed {
		t.Errorf("replayed confirm changed state: %+v", res.Recipient)
	}
	// Narrowing from two topics to one is an answer of its own.
	if res := answer(0, repermit.StateConfirmed, "yoga"); !res.Changed || strings.Join(res.Recipient.Topics, ",") != "yoga" ||
		strings.Join(res.Record.TopicsBefore, ",") != "yoga,events" || strings.Join(res.Record.Topics, ",") != "yoga" {
		t.Errorf("narrowing topics: %+v, record %+v", res.Recipient, res.Record)
	}
	if r, _ := s.Recipient(ctx, "camp", 0); strings.Join(r.Topics, ",") != "yoga" {
		t.Errorf("topics read back after narrowing: %v", r.Topics)
	}
	if res := answer(1, repermit.StateDeclined); !res.Changed || res.Recipient.Email != "" {
		t.Errorf("decline kept the address: %+v", res.Recipient)
	}
	if res := answer(1, repermit.StateConfirmed); res.Changed || res.Recipient.State != repermit.StateDeclined {
		t.Errorf("confirm after decline: %+v", res.Recipient)
	}
	if res := answer(2, repermit.StateConfirmed); !res.Changed {
		t.Error("confirm 2 did not change")
	}
	if res := answer(2, repermit.StateUnsubscribed); !res.Changed || res.Recipient.State != repermit.StateUnsubscribed {
		t.Errorf("unsubscribe after confirm: %+v", res.Recipient)
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{
		repermit.StateConfirmed: 1, repermit.StateDeclined: 1, repermit.StateUnsubscribed: 1, repermit.StateSent: 1,
	})
	// Recipient 0 confirmed yoga and events, then kept only yoga;
	// recipient 2 confirmed (all topics: none chosen) and then
	// unsubscribed, taking nothing along.
	if st, _ := s.Stats(ctx, "camp"); st.Topics["yoga"] != 1 || st.Topics["events"] != 0 {
		t.Errorf("topic counts = %v", st.Topics)
	}
	answer(3, repermit.StateConfirmed, "yoga")
	answer(3, repermit.StateDeclined)
	if st, _ := s.Stats(ctx, "camp"); st.Topics["yoga"] != 1 {
		t.Errorf("yoga after confirm and decline = %d, want 1", st.Topics["yoga"])
	}

	var recs []repermit.ConsentRecord
	if err := s.Ledger(ctx, "camp", func(r repermit.ConsentRecord, _ string) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 {
		t.Fatalf("ledger has %d records, want 7", len(recs))
	}
	if err := repermit.CheckSequence(recs); err != nil {
		t.Errorf("CheckSequence: %v", err)
	}
	if recs[0].Answer != repermit.StateConfirmed || strings.Join(recs[0].Topics, ",") != "yoga,events" {
		t.Errorf("first record %+v", recs[0])
	}

	for _, email := range []string{"a1@example.com", "a2@example.com"} {
		sup, err := s.IsSuppressed(ctx, []string{repermit.AddressHash(email)})
		if err != nil || !sup[0] {
			t.Errorf("%s not suppressed after answer: %v %v", email, sup, err)
		}
	}
}

// mail records the initial mail of recipients idxs through the
// production claim path.
func mail(t *testing.T, s *redisstore.Store, id string, idxs []int64, at time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, step := range []func() ([]error, error){
		func() ([]error, error) { return s.ClaimBatch(ctx, id, idxs, 1, at, time.Minute) },
		func() ([]error, error) { return s.MarkSentBatch(ctx, id, idxs, 1, at) },
	} {
		errs, err := step()
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func span(from, to int64) []int64 {
	out := make([]int64, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

var localPart = regexp.MustCompile(`a([0-9]+)[\x00-\x20]?@example\.com`)

// TestExpireBucketErasesAndSuppresses: at the deadline the mailed and
// silent expire (erased, suppressed); the never mailed are unreached and
// keep their address, unsuppressed.
func TestExpireBucketErasesAndSuppresses(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 200)
	if _, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: 5, State: repermit.StateConfirmed, At: t0}); err != nil {
		t.Fatal(err)
	}
	mail(t, s, "camp", slices.DeleteFunc(span(0, 150), func(i int64) bool { return i == 5 }), t0)
	expired, unreached := 0, 0
	for b := int64(0); b < redisstore.Buckets(200); b++ {
		e, u, err := s.ExpireBucket(ctx, "camp", b, t0.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		expired += e
		unreached += u
	}
	if expired != 149 || unreached != 50 {
		t.Errorf("expired %d, unreached %d, want 149 and 50", expired, unreached)
	}
	if err := s.DrainSuppression(ctx, "camp"); err != nil {
		t.Fatal(err)
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{repermit.StateConfirmed: 1, repermit.StateExpired: 149, repermit.StateUnreached: 50})
	// The buckets themselves, rewritten without the erased fields, hold
	// every recipient in the state the counts say.
	states := map[repermit.State]int{}
	for b := int64(0); b < redisstore.Buckets(200); b++ {
		rs, err := s.Bucket(ctx, "camp", b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			states[r.State]++
		}
	}
	if want := map[repermit.State]int{repermit.StateConfirmed: 1, repermit.StateExpired: 149, repermit.StateUnreached: 50}; !maps.Equal(states, want) {
		t.Errorf("states in the buckets = %v, want %v", states, want)
	}
	// Only the confirmed and the unreached addresses may remain anywhere in
	// the campaign's keys.
	for _, key := range r.Keys(t) {
		typ := r.Client.Type(ctx, key).Val()
		if typ != "hash" {
			continue
		}
		for f, v := range r.Client.HGetAll(ctx, key).Val() {
			if !strings.Contains(v, "@example.com") {
				continue
			}
			// The packed row holds the local part "a<i>" right before
			// "@example.com"; recipient 5 confirmed and keeps it.
			m := localPart.FindStringSubmatch(v)
			var i int
			if m != nil {
				fmt.Sscan(m[1], &i)
			}
			if m == nil || (i < 150 && i != 5) {
				t.Errorf("%s %s still holds %q", key, f, v)
			}
		}
	}
	unr, err := s.Recipient(ctx, "camp", 170)
	if err != nil || unr.State != repermit.StateUnreached || unr.Email != "a170@example.com" {
		t.Errorf("recipient 170 = %+v, %v; want unreached with its address", unr, err)
	}
	sup, _ := s.IsSuppressed(ctx, []string{repermit.AddressHash("a7@example.com"), repermit.AddressHash("a5@example.com"), repermit.AddressHash("a170@example.com")})
	if !sup[0] || sup[1] || sup[2] {
		t.Errorf("suppressed = %v, want [true false false]", sup)
	}
	// Expiring again changes nothing.
	if e, u, _ := s.ExpireBucket(ctx, "camp", 1, t0.Add(3*time.Hour)); e+u != 0 {
		t.Errorf("second expiry changed %d", e+u)
	}
}

// TestExpiryWaitsForAnInitialMailInFlight: a mail claimed before the
// deadline whose SMTP conversation outlives it is neither unreached (it may
// yet be accepted) nor expired (it may yet fail) until the sender records
// it or its lease runs out.
func TestExpiryWaitsForAnInitialMailInFlight(t *testing.T) {
	ctx := context.Background()
	deadline := t0.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		then  func(t *testing.T, s *redisstore.Store) time.Time // returns when to expire again
		state repermit.State
	}{
		{"accepted after the deadline", func(t *testing.T, s *redisstore.Store) time.Time {
			if err := s.MarkSent(ctx, "camp", 0, 1, deadline.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			return deadline.Add(2 * time.Second)
		}, repermit.StateExpired},
		{"sender died", func(t *testing.T, s *redisstore.Store) time.Time {
			return deadline.Add(time.Minute) // the lease ran out
		}, repermit.StateUnreached},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			launch(t, s, "camp", 2)
			if err := claim(s, "camp", 0, 1, deadline.Add(-time.Second), 20*time.Second); err != nil {
				t.Fatal(err)
			}
			e, u, err := s.ExpireBucket(ctx, "camp", 0, deadline)
			if !errors.Is(err, redisstore.ErrBusy) || e != 0 || u != 1 {
				t.Fatalf("expiry with a mail in flight: %d expired, %d unreached, %v; want 0, 1 (the unclaimed one) and ErrBusy", e, u, err)
			}
			if r, _ := s.Recipient(ctx, "camp", 0); r.State != repermit.StatePending || r.Email == "" {
				t.Fatalf("recipient in flight after the first expiry: %+v", r)
			}
			e, u, err = s.ExpireBucket(ctx, "camp", 0, tc.then(t, s))
			if err != nil || e+u != 1 {
				t.Fatalf("second expiry: %d expired, %d unreached, %v", e, u, err)
			}
			if r, _ := s.Recipient(ctx, "camp", 0); r.State != tc.state {
				t.Errorf("recipient in flight ends %s, want %s", r.State, tc.state)
			}
		})
	}
}

func TestTimelineCountsEntriesPerStateAndMinute(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 3)
	for i := int64(0); i < 3; i++ {
		if err := claim(s, "camp", i, 1, t0, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSent(ctx, "camp", i, 1, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: 0, State: repermit.StateConfirmed, At: t0.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	tl, err := s.Timeline(ctx, "camp")
	if err != nil {
		t.Fatal(err)
	}
	sent := tl[repermit.StateSent]
	if len(sent) != 3 || sent[t0] != 1 || sent[t0.Add(2*time.Minute)] != 1 {
		t.Errorf("sent timeline = %v", sent)
	}
	if tl[repermit.StateConfirmed][t0.Add(5*time.Minute)] != 1 {
		t.Errorf("confirmed timeline = %v", tl[repermit.StateConfirmed])
	}
}

func TestPurgeKeepsCountsAndLedgerOnly(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 300)
	if _, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: 1, State: repermit.StateConfirmed, At: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeRecipients(ctx, "camp"); repermit.ErrorCode(err) != repermit.ECONFLICT {
		t.Errorf("purge of a running campaign: err = %v, want ECONFLICT", err)
	}
	if err := s.SetStatus(ctx, "camp", repermit.StatusFinished, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeRecipients(ctx, "camp"); err != nil {
		t.Fatal(err)
	}
	// Only the confirmed recipient's state, answer and address hash stay.
	for _, k := range r.Keys(t) {
		if !strings.Contains(k, ":b:") {
			continue
		}
		fields := r.Client.HGetAll(ctx, k).Val()
		if !strings.HasSuffix(k, ":b:0") || len(fields) != 3 || fields["s1"] != "c" || fields["d1"] != "#"+repermit.AddressHash("a1@example.com") || fields["a1"] == "" {
			t.Errorf("recipient bucket %s after the purge: %q", k, fields)
		}
	}
	st, err := s.Stats(ctx, "camp")
	if err != nil || st.Counts[repermit.StateConfirmed] != 1 || st.LedgerRecords != 1 {
		t.Errorf("stats after purge = %+v, %v", st, err)
	}
	// The unsubscribe link still works: it suppresses the kept hash and
	// records the withdrawal.
	res, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: 1, State: repermit.StateUnsubscribed, At: t0.Add(48 * time.Hour)})
	if err != nil || !res.Changed {
		t.Fatalf("unsubscribe after the purge: %+v %v", res, err)
	}
	if sup, _ := s.IsSuppressed(ctx, []string{repermit.AddressHash("a1@example.com")}); !sup[0] {
		t.Error("withdrawal after the purge did not suppress the address")
	}
	if _, err := s.Recipient(ctx, "camp", 2); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("purged recipient 2: %v, want ENOTFOUND", err)
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{repermit.StateUnsubscribed: 1, repermit.StatePending: 299})
}

func TestConcurrentAnswersFromTwoProcessesKeepOneChain(t *testing.T) {
	s1, r := newStore(t)
	s2 := redisstore.New(r.Client, r.Prefix) // a second web process
	ctx := context.Background()
	const n = 200
	launch(t, s1, "camp", n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		go func(idx int64) {
			res, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: idx, State: repermit.StateConfirmed, At: t0})
			if err == nil && !res.Changed {
				err = fmt.Errorf("answer %d did not change", idx)
			}
			errs <- err
		}(int64(i))
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	var recs []repermit.ConsentRecord
	if err := s1.Ledger(ctx, "camp", func(r repermit.ConsentRecord, _ string) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("ledger has %d records, want %d", len(recs), n)
	}
	if err := repermit.CheckSequence(recs); err != nil {
		t.Errorf("chain broken: %v", err)
	}
	assertCounts(t, s1, "camp", map[repermit.State]int64{repermit.StateConfirmed: n})
}

// TestAnswersRefusedAmidAGroupCommitLeaveTheOthersWritten: answers of one
// campaign arriving together are written in pipelined batches, each record
// chained onto the one before it. A third of them are refused by the
// script (the recipient declined since the page was read), in the middle
// of those batches; the answers behind each refusal are written all the
// same, every request hears its own outcome, and the chain is whole.
func TestAnswersRefusedAmidAGroupCommitLeaveTheOthersWritten(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const n = 300
	launch(t, s, "camp", n)
	seen := make([]*repermit.Recipient, n)
	for i := range seen {
		r, err := s.Recipient(ctx, "camp", int64(i))
		if err != nil {
			t.Fatal(err)
		}
		seen[i] = r
	}
	for i := 0; i < n; i += 3 {
		if _, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: int64(i), State: repermit.StateDeclined, At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		idx int
		res redisstore.AnswerResult
		err error
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			// The page was read before the decline: the script, not
			// Record, finds the confirm refused.
			res, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: int64(i), State: repermit.StateConfirmed, Topics: []string{"yoga"}, At: t0, Current: seen[i]})
			results <- result{i, res, err}
		}()
	}
	for range n {
		r := <-results
		declined := r.idx%3 == 0
		switch {
		case r.err != nil:
			t.Errorf("answer %d: %v", r.idx, r.err)
		case r.res.Changed == declined:
			t.Errorf("answer %d: changed = %v, want %v", r.idx, r.res.Changed, !declined)
		case declined && r.res.Recipient.State != repermit.StateDeclined:
			t.Errorf("refused answer %d reports state %s, want declined", r.idx, r.res.Recipient.State)
		case !declined && (r.res.Record == nil || r.res.Record.Recipient != int64(r.idx)):
			t.Errorf("answer %d: record %+v, want one of recipient %d", r.idx, r.res.Record, r.idx)
		}
	}
	var recs []repermit.ConsentRecord
	if err := s.Ledger(ctx, "camp", func(r repermit.ConsentRecord, _ string) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("ledger has %d records, want %d (%d declines, %d confirms)", len(recs), n, n/3, n-n/3)
	}
	if err := repermit.CheckSequence(recs); err != nil {
		t.Errorf("chain broken: %v", err)
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{repermit.StateDeclined: n / 3, repermit.StateConfirmed: n - n/3})
}

// TestAnswerOfAnEndedRequestIsNotWritten: a request that has ended before
// its answer was sent gets an error and leaves the recipient and the
// ledger as they were, so no page ever hides a recorded answer behind an
// error.
func TestAnswerOfAnEndedRequestIsNotWritten(t *testing.T) {
	s, _ := newStore(t)
	launch(t, s, "camp", 1)
	cur, err := s.Recipient(context.Background(), "camp", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: 0, State: repermit.StateConfirmed, At: t0, Current: cur}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Record with an ended request = %v, want context.Canceled", err)
	}
	if n, err := s.LedgerSize(context.Background(), "camp"); err != nil || n != 0 {
		t.Errorf("ledger size = %d, %v; want 0", n, err)
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{repermit.StatePending: 1})
}

// TestEveryColumnNameAndValueRoundTrips imports recipients whose extra
// columns have names and values with the characters the packed encoding
// uses ('=', the unit separator, its escape) and reads them back unchanged.
func TestEveryColumnNameAndValueRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rname string
		extra map[string]string
	}{
		{"plain", "Anna", map[string]string{"city": "Köln"}},
		{"= in a column name", "Anna", map[string]string{"utm=source": "mail", "a==b": "=c="}},
		{"= in a value", "Anna", map[string]string{"formula": "=1+1", "kv": "x=y=z"}},
		{"unit separator", "An\x1fna", map[string]string{"a\x1fb": "c\x1fd"}},
		{"the escape byte", "An\x1ena", map[string]string{"a\x1e": "\x1e", "\x1e=": "=\x1e\x1f"}},
		{"empty name and value", "", map[string]string{"": "", "k": ""}},
		{"no name, only extra", "", map[string]string{"only": "one"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := context.Background()
			c := repermit.Campaign{ID: "cols", From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour)}
			imp, err := s.BeginImport(ctx, c, t0)
			if err != nil {
				t.Fatal(err)
			}
			if err := imp.Add(ctx, "a@example.com", tc.rname, "de", tc.extra); err != nil {
				t.Fatal(err)
			}
			if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "cols", Imported: 1}); err != nil {
				t.Fatal(err)
			}
			r, err := s.Recipient(ctx, "cols", 0)
			if err != nil {
				t.Fatal(err)
			}
			if r.Email != "a@example.com" || r.Name != tc.rname || r.Locale != "de" {
				t.Errorf("recipient = %q %q %q, want a@example.com %q de", r.Email, r.Name, r.Locale, tc.rname)
			}
			// An empty cell need not be stored: absent reads as "".
			for k := range r.Extra {
				if _, ok := tc.extra[k]; !ok {
					t.Errorf("extra = %q, want %q", r.Extra, tc.extra)
				}
			}
			for k, v := range tc.extra {
				if got, ok := r.Extra[k]; (!ok && v != "") || got != v {
					t.Errorf("column %q = %q (present %v), want %q; all: %q", k, got, ok, v, r.Extra)
				}
			}
		})
	}
}

// TestAnswerFromAStaleReadIsMadeAnew: an answer made from a read of the
// recipient that another answer overtook (a second tab, a page cached by
// the web server) is not written as made: its record would name the
// wrong topics before. It is made anew from the recipient as it is, in
// home's buckets (chained onto the log in a batch) as in another shard's
// (queued, then drained).
func TestAnswerFromAStaleReadIsMadeAnew(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards int
		first  int64 // of the three recipients answering
	}{
		{"home", 1, 0},
		{"another shard", 3, redisstore.BucketSize}, // bucket 1, shard 1
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := context.Background()
			launchShards(t, s, "camp", int(tc.first)+3, tc.shards)
			idx := []int64{tc.first, tc.first + 1, tc.first + 2}
			mail(t, s, "camp", idx, t0)
			at := t0.Add(time.Minute)
			answer := func(idx int64, cur *repermit.Recipient, st repermit.State, topics ...string) redisstore.AnswerResult {
				t.Helper()
				res, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: idx, State: st, Topics: topics, At: at, IP: "192.0.2.0", UserAgent: "test", Current: cur})
				if err != nil {
					t.Fatalf("answer %d %s: %v", idx, st, err)
				}
				return res
			}
			stale := make([]*repermit.Recipient, 3)
			for i := range stale {
				r, err := s.Recipient(ctx, "camp", idx[i])
				if err != nil {
					t.Fatal(err)
				}
				stale[i] = r
			}
			answer(idx[0], nil, repermit.StateConfirmed, "yoga", "events")
			answer(idx[1], nil, repermit.StateDeclined)
			answer(idx[2], nil, repermit.StateConfirmed, "yoga")

			// Read as sent, but confirmed with both topics since: narrowing
			// to yoga names both as the topics before.
			if res := answer(idx[0], stale[0], repermit.StateConfirmed, "yoga"); !res.Changed || res.Record == nil ||
				strings.Join(res.Record.TopicsBefore, ",") != "yoga,events" {
				t.Errorf("narrowing from a stale read: %+v, record %+v", res.Recipient, res.Record)
			}
			// Read as sent, declined since: a confirmation is refused.
			if res := answer(idx[1], stale[1], repermit.StateConfirmed); res.Changed || res.Recipient.State != repermit.StateDeclined {
				t.Errorf("confirm after decline, from a stale read: changed %v, state %s", res.Changed, res.Recipient.State)
			}
			// Read as sent, confirmed with yoga since: the same answer
			// again is a replay.
			if res := answer(idx[2], stale[2], repermit.StateConfirmed, "yoga"); res.Changed {
				t.Errorf("replay from a stale read changed the recipient: %+v", res.Recipient)
			}

			var recs []repermit.ConsentRecord
			if err := s.Ledger(ctx, "camp", func(r repermit.ConsentRecord, _ string) error { recs = append(recs, r); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(recs) != 4 {
				t.Errorf("ledger has %d records, want 4: three answers and one narrowing", len(recs))
			}
			if len(recs) > 0 {
				if last := recs[len(recs)-1]; last.Recipient != idx[0] || strings.Join(last.TopicsBefore, ",") != "yoga,events" {
					t.Errorf("last record in the log %+v, want the narrowing of %d from yoga,events", last, idx[0])
				}
			}
			if st, _ := s.Stats(ctx, "camp"); st.Topics["yoga"] != 2 || st.Topics["events"] != 0 {
				t.Errorf("topic counts = %v, want yoga 2, events 0", st.Topics)
			}
		})
	}
}
