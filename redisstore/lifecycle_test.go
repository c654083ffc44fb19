package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// TestAnswersAfterTheDeadline: after the deadline only the confirmed may
// still answer; everyone else still waiting is EGONE and unchanged, and a
// final state stays as it is without an error.
func TestAnswersAfterTheDeadline(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	c := launch(t, s, "camp", 8)
	mail(t, s, "camp", span(0, 6), t0) // 6 and 7 stay pending
	answerAs(t, s, "camp", 0, repermit.StateConfirmed, t0.Add(time.Minute), "yoga")
	answerAs(t, s, "camp", 1, repermit.StateConfirmed, t0.Add(time.Minute))
	r4, err := s.Recipient(ctx, "camp", 4)
	mustDo(t, err)
	mustDo(t, s.Bounce(ctx, r4, t0.Add(time.Minute)))
	late := c.Deadline.Add(time.Minute)
	type answerCase struct {
		name   string
		idx    int64
		answer repermit.State
		code   string
		want   repermit.State
	}
	check := func(cases []answerCase) {
		t.Helper()
		for _, tc := range cases {
			res, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: tc.idx, State: tc.answer, At: late, Topics: []string{"events"}})
			if repermit.ErrorCode(err) != tc.code || (tc.code == "" && err != nil) {
				t.Errorf("%s: Record = %v; want code %q", tc.name, err, tc.code)
				continue
			}
			if tc.want == "" {
				continue
			}
			if res.Recipient == nil || res.Recipient.State != tc.want {
				t.Errorf("%s: answer left %+v; want %s", tc.name, res.Recipient, tc.want)
			}
			if got, err := s.Recipient(ctx, "camp", tc.idx); err != nil || got.State != tc.want {
				t.Errorf("%s: stored state %v, %v; want %s", tc.name, got, err, tc.want)
			}
		}
	}
	// Past the deadline, before the expiry has come round.
	check([]answerCase{
		{"the mailed and silent are too late", 5, repermit.StateConfirmed, repermit.EGONE, repermit.StateSent},
		{"the mailed cannot unsubscribe either", 5, repermit.StateUnsubscribed, repermit.EGONE, repermit.StateSent},
		{"the never mailed are too late", 7, repermit.StateDeclined, repermit.EGONE, repermit.StatePending},
	})
	// At the deadline the mailed and silent (2, 3, 5) expire, the never
	// mailed (6, 7) are unreached.
	if _, _, err := s.ExpireBucket(ctx, "camp", 0, c.Deadline); err != nil {
		t.Fatal(err)
	}
	mustDo(t, s.SetStatus(ctx, "camp", repermit.StatusFinished, repermit.StatusRunning))
	check([]answerCase{
		{"the confirmed may change topics", 0, repermit.StateConfirmed, "", repermit.StateConfirmed},
		{"the confirmed may withdraw", 1, repermit.StateUnsubscribed, "", repermit.StateUnsubscribed},
		{"the expired are gone", 2, repermit.StateConfirmed, repermit.EGONE, repermit.StateExpired},
		{"the expired cannot decline either", 3, repermit.StateDeclined, repermit.EGONE, repermit.StateExpired},
		{"a bounce is final", 4, repermit.StateConfirmed, "", repermit.StateBounced},
		{"the unreached are gone", 6, repermit.StateConfirmed, repermit.EGONE, repermit.StateUnreached},
		{"no such recipient", 99, repermit.StateConfirmed, repermit.ENOTFOUND, ""},
		{"not an answer", 0, repermit.StateExpired, repermit.EINVALID, ""},
	})
	if r0, _ := s.Recipient(ctx, "camp", 0); strings.Join(r0.Topics, ",") != "events" {
		t.Errorf("late change of topics stored %v", r0.Topics)
	}
	if _, err := s.Record(ctx, redisstore.Answer{Campaign: "nope", Index: 0, State: repermit.StateConfirmed, At: late}); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("answer to an unknown campaign: %v; want ENOTFOUND", err)
	}
	// Records: two confirmations before, one topic change and one
	// withdrawal after; nothing for the refused.
	if n, err := s.LedgerSize(ctx, "camp"); err != nil || n != 4 {
		t.Errorf("LedgerSize = %d, %v; want 4", n, err)
	}
}

// TestEveryStoredStateReadsAsItsPublicState: each stored state code reads
// back as the state and step status, export and the pages show.
func TestEveryStoredStateReadsAsItsPublicState(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 12)
	at := t0.Add(time.Minute)
	claimOK := func(idx int64, step int) {
		t.Helper()
		errs, err := s.ClaimBatch(ctx, "camp", []int64{idx}, step, at, time.Hour)
		if err == nil {
			err = errs[0]
		}
		mustDo(t, err)
	}
	sent := func(idx int64, step int) {
		t.Helper()
		claimOK(idx, step)
		mustDo(t, s.MarkSent(ctx, "camp", idx, step, at))
	}
	recipient := func(idx int64) *repermit.Recipient {
		r, err := s.Recipient(ctx, "camp", idx)
		mustDo(t, err)
		return r
	}

	claimOK(1, 1)
	sent(2, 1)
	sent(3, 1)
	claimOK(3, 2)
	sent(4, 1)
	sent(4, 2)
	answerAs(t, s, "camp", 5, repermit.StateConfirmed, at)
	answerAs(t, s, "camp", 6, repermit.StateDeclined, at)
	answerAs(t, s, "camp", 7, repermit.StateUnsubscribed, at)
	sent(8, 1)
	mustDo(t, s.Bounce(ctx, recipient(8), at))
	mustDo(t, s.Suppress(ctx, recipient(9), at))
	sent(10, 1)
	type stateCase struct {
		idx   int64
		state repermit.State
		step  int
	}
	cases := []stateCase{
		{0, repermit.StatePending, 0},
		{1, repermit.StatePending, 0}, // initial mail claimed
		{2, repermit.StateSent, 1},
		{3, repermit.StateSent, 1}, // first reminder claimed
		{4, repermit.StateSent, 2},
		{5, repermit.StateConfirmed, 0},
		{6, repermit.StateDeclined, 0},
		{7, repermit.StateUnsubscribed, 0},
		{8, repermit.StateBounced, 0},
		{9, repermit.StateSuppressed, 0},
	}
	check := func(cases []stateCase) {
		t.Helper()
		rs, err := s.Bucket(ctx, "camp", 0)
		mustDo(t, err)
		for _, tc := range cases {
			r := recipient(tc.idx)
			if r.State != tc.state || r.Step != tc.step {
				t.Errorf("recipient %d reads %s step %d; want %s step %d", tc.idx, r.State, r.Step, tc.state, tc.step)
			}
			if b := rs[tc.idx]; b.State != r.State || b.Step != r.Step {
				t.Errorf("recipient %d: Bucket reads %s step %d, Recipient %s step %d", tc.idx, b.State, b.Step, r.State, r.Step)
			}
		}
	}
	check(cases)
	assertCounts(t, s, "camp", map[repermit.State]int64{
		repermit.StatePending: 3, repermit.StateSent: 4, repermit.StateConfirmed: 1, repermit.StateDeclined: 1,
		repermit.StateUnsubscribed: 1, repermit.StateBounced: 1, repermit.StateSuppressed: 1,
	})

	// Past the deadline 1's claim has run out: never mailed, unreached;
	// 3's reminder claim expires as the mailed do.
	c, err := s.Campaign(ctx, "camp")
	mustDo(t, err)
	end := c.Deadline.Add(2 * time.Hour)
	if _, _, err := s.ExpireBucket(ctx, "camp", 0, end); err != nil {
		t.Fatal(err)
	}
	check([]stateCase{
		{0, repermit.StateUnreached, 0}, {1, repermit.StateUnreached, 0}, {2, repermit.StateExpired, 0},
		{3, repermit.StateExpired, 0}, {10, repermit.StateExpired, 0}, {11, repermit.StateUnreached, 0},
		{5, repermit.StateConfirmed, 0},
	})
	assertCounts(t, s, "camp", map[repermit.State]int64{
		repermit.StateUnreached: 3, repermit.StateExpired: 4, repermit.StateConfirmed: 1, repermit.StateDeclined: 1,
		repermit.StateUnsubscribed: 1, repermit.StateBounced: 1, repermit.StateSuppressed: 1,
	})
}

// TestCrashedImportIsClearedByTheNextLaunch: an import whose heartbeat
// is older than its lease is a crash; the next launch of the id removes
// what it wrote and takes the id. A live import is not touched.
func TestCrashedImportIsClearedByTheNextLaunch(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	// The import's heartbeat is the wall clock, so the test's is too.
	now := time.Now()
	c := repermit.Campaign{ID: "camp", StartAt: now, Deadline: now.Add(time.Hour)}
	crashed, err := s.BeginImport(ctx, c, now)
	mustDo(t, err)
	for i := 0; i < 3*128*64; i++ { // past the first flush
		mustDo(t, crashed.Add(ctx, fmt.Sprintf("x%d@example.com", i), "", "", nil))
	}
	if _, err := s.BeginImport(ctx, c, now.Add(time.Minute)); repermit.ErrorCode(err) != repermit.ECONFLICT {
		t.Fatalf("launch while the import is alive: %v; want ECONFLICT", err)
	}
	if n := bucketsOf(t, r, "camp"); n == 0 {
		t.Fatal("the first import wrote no bucket; the test proves nothing")
	}
	next, err := s.BeginImport(ctx, c, now.Add(5*time.Minute))
	if err != nil {
		t.Fatalf("launch after the lease: %v", err)
	}
	if n := bucketsOf(t, r, "camp"); n != 0 {
		t.Errorf("%d buckets of the crashed import left", n)
	}
	mustDo(t, next.Add(ctx, "new@example.com", "", "", nil))
	mustDo(t, next.Commit(ctx, repermit.ImportResult{Campaign: "camp", Imported: 1}))
	got, err := s.Campaign(ctx, "camp")
	if err != nil || got.Seq != next.Campaign().Seq {
		t.Fatalf("Campaign = %+v, %v; want seq %d", got, err, next.Campaign().Seq)
	}
	if n, err := s.Imported(ctx, "camp"); err != nil || n != 1 {
		t.Errorf("Imported = %d, %v; want 1", n, err)
	}
	if rec, err := s.Recipient(ctx, "camp", 0); err != nil || rec.Email != "new@example.com" {
		t.Errorf("recipient 0 = %+v, %v", rec, err)
	}
	if _, err := s.CampaignBySeq(ctx, crashed.Campaign().Seq); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("the crashed import's seq still finds a campaign: %v", err)
	}
}

func bucketsOf(t *testing.T, r interface{ Keys(testing.TB) []string }, id string) int {
	t.Helper()
	n := 0
	for _, k := range r.Keys(t) {
		if strings.Contains(k, ":{"+id+"}:b:") {
			n++
		}
	}
	return n
}

// TestSetStatusMovesOnlyFromTheStatusesNamed: a status change happens
// from an allowed status, is a no-op when already there, and names the
// current status when refused.
func TestSetStatusMovesOnlyFromTheStatusesNamed(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 1)
	running, paused, cancelled := repermit.StatusRunning, repermit.StatusPaused, repermit.StatusCancelled
	steps := []struct {
		name string
		to   repermit.CampaignStatus
		from []repermit.CampaignStatus
		code string
		want repermit.CampaignStatus
	}{
		{"pause", paused, []repermit.CampaignStatus{running}, "", paused},
		{"pause again", paused, []repermit.CampaignStatus{running}, "", paused},
		{"resume from the wrong status", running, []repermit.CampaignStatus{cancelled}, repermit.ECONFLICT, paused},
		{"cancel from either", cancelled, []repermit.CampaignStatus{running, paused}, "", cancelled},
		{"no way back", running, []repermit.CampaignStatus{paused}, repermit.ECONFLICT, cancelled},
	}
	for _, st := range steps {
		err := s.SetStatus(ctx, "camp", st.to, st.from...)
		if repermit.ErrorCode(err) != st.code || (st.code == "" && err != nil) {
			t.Errorf("%s: %v; want code %q", st.name, err, st.code)
		}
		if st.code == repermit.ECONFLICT && !strings.Contains(fmt.Sprint(err), "is "+string(st.want)) {
			t.Errorf("%s: %q does not name the current status %s", st.name, err, st.want)
		}
		assertStatus(t, s, "camp", st.want)
	}
	if err := s.SetStatus(ctx, "nope", paused, running); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("SetStatus of an unknown campaign: %v", err)
	}
	if _, err := s.Stats(ctx, "nope"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("Stats of an unknown campaign: %v", err)
	}
}

// TestChangesToAMissingCampaign: a recipient change of a campaign that
// does not exist (deleted, or an old task) is EGONE, reads are ENOTFOUND
// or nothing, and no key is written.
func TestChangesToAMissingCampaign(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 2)
	before := len(r.Keys(t))
	gone := []struct {
		name string
		call func() error
	}{
		{"MarkSent", func() error { return s.MarkSent(ctx, "nope", 0, 1, t0) }},
		{"Release", func() error { return s.Release(ctx, "nope", 0, 1, t0) }},
		{"ClaimBatch", func() error { _, err := s.ClaimBatch(ctx, "nope", []int64{0}, 1, t0, time.Minute); return err }},
		{"Record with the recipient as the caller read it", func() error {
			_, err := s.Record(ctx, redisstore.Answer{Campaign: "nope", Index: 0, State: repermit.StateConfirmed, At: t0,
				Current: &repermit.Recipient{Campaign: "nope", Index: 0, State: repermit.StateSent, Email: "a0@example.com"}})
			return err
		}},
		{"ExpireBucket", func() error {
			// A bucket with recipients in a campaign whose meta is gone.
			mustDo(t, r.Client.HSet(ctx, r.Prefix+":{nope}:b:0", "s0", "s1").Err())
			defer r.Client.Del(ctx, r.Prefix+":{nope}:b:0")
			_, _, err := s.ExpireBucket(ctx, "nope", 0, t0)
			return err
		}},
	}
	for _, g := range gone {
		if err := g.call(); repermit.ErrorCode(err) != repermit.EGONE {
			t.Errorf("%s on a missing campaign: %v; want EGONE", g.name, err)
		}
	}
	if _, _, err := s.ReadForSend(ctx, "nope", []int64{0}); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("ReadForSend of a missing campaign: %v", err)
	}
	for _, idx := range []int64{-1, 2, 128} {
		if _, err := s.Recipient(ctx, "camp", idx); repermit.ErrorCode(err) != repermit.ENOTFOUND {
			t.Errorf("Recipient %d: %v; want ENOTFOUND", idx, err)
		}
	}
	_, rs, err := s.ReadForSend(ctx, "camp", []int64{-1, 1, 2})
	if err != nil || rs[0] != nil || rs[1] == nil || rs[2] != nil {
		t.Errorf("ReadForSend(-1, 1, 2) = %v, %v; want nil, recipient 1, nil", rs, err)
	}
	if err := s.MarkSent(ctx, "camp", 5, 1, t0); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("MarkSent of a recipient that does not exist: %v; want ENOTFOUND", err)
	}
	if err := s.Release(ctx, "camp", 0, 1, t0); !errors.Is(err, redisstore.ErrNotAllowed) {
		t.Errorf("Release of an unclaimed recipient: %v; want ErrNotAllowed", err)
	}
	if after := len(r.Keys(t)); after != before {
		t.Errorf("keys went from %d to %d", before, after)
	}
}

// TestCancelledContextIsNotUnavailable: a call whose caller gave up is
// the caller's context error, not a Redis outage (web answers 503 only
// for the latter).
func TestCancelledContextIsNotUnavailable(t *testing.T) {
	s, _ := newStore(t)
	launch(t, s, "camp", 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"Campaign":  func() error { _, err := s.Campaign(ctx, "camp"); return err },
		"Recipient": func() error { _, err := s.Recipient(ctx, "camp", 0); return err },
		"MarkSent":  func() error { return s.MarkSent(ctx, "camp", 0, 1, t0) },
		"Stats":     func() error { _, err := s.Stats(ctx, "camp"); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, context.Canceled) || repermit.ErrorCode(err) == repermit.EUNAVAILABLE {
			t.Errorf("%s with a cancelled context: %v (code %q); want context.Canceled", name, err, repermit.ErrorCode(err))
		}
	}
}

// TestNewAndAddr: an empty prefix is the default one, and a store made
// from a client names the client's server.
func TestNewAndAddr(t *testing.T) {
	s, r := newStore(t)
	if d := redisstore.New(r.Client, ""); d.Prefix() != "repermit" {
		t.Errorf("default prefix %q", d.Prefix())
	}
	if addr := s.Addr(); r.Cluster() && addr != "redis" || !r.Cluster() && !strings.Contains(r.URL, addr) {
		t.Errorf("Addr = %q for %s", addr, r.URL)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close of a store from New: %v", err)
	}
	if err := r.Client.Ping(context.Background()).Err(); err != nil {
		t.Errorf("Close of a store from New closed the caller's client: %v", err)
	}
}

// TestImportCheckingSuppressionKeepsItsLease: an import that writes no
// rows for longer than its lease (a campaign sent in waves holds its rows
// until the file is read, checking each batch against the suppression
// list) is alive, not crashed: a launch of the same id is refused and
// leaves it alone.
func TestImportCheckingSuppressionKeepsItsLease(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Now()
	c := repermit.Campaign{ID: "camp", StartAt: now, Deadline: now.Add(time.Hour)}
	// Begun three minutes ago, past its two-minute lease, and reading the
	// file since.
	slow, err := s.BeginImport(ctx, c, now.Add(-3*time.Minute))
	mustDo(t, err)
	if _, err := slow.Suppressed(ctx, []string{repermit.AddressHash("a@example.com")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginImport(ctx, c, time.Now()); repermit.ErrorCode(err) != repermit.ECONFLICT {
		t.Fatalf("launch of the same id while the import checks suppression: %v; want ECONFLICT", err)
	}
	mustDo(t, slow.Add(ctx, "a0@example.com", "", "", nil))
	mustDo(t, slow.Commit(ctx, repermit.ImportResult{Campaign: "camp", Imported: 1}))
	if got, err := s.Campaign(ctx, "camp"); err != nil || got.Seq != slow.Campaign().Seq {
		t.Errorf("Campaign = %+v, %v; want the slow import's, seq %d", got, err, slow.Campaign().Seq)
	}
}
