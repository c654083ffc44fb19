package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// launchShards imports n recipients a0@example.com … into a campaign of
// the given number of shards, with a webhook (so that its scripts write
// events).
func launchShards(t *testing.T, s *redisstore.Store, id string, n, shards int) *redisstore.Import {
	t.Helper()
	ctx := context.Background()
	c := repermit.Campaign{ID: id, From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour),
		Topics: []string{"yoga", "events"}, Shards: shards,
		Webhooks: []repermit.Webhook{{URL: "https://crm.acme.example/hook", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatalf("BeginImport: %v", err)
	}
	for i := 0; i < n; i++ {
		if err := imp.Add(ctx, fmt.Sprintf("a%d@example.com", i), fmt.Sprintf("Name %d", i), "de", nil); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: id, Imported: int64(n)}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return imp
}

// campaignFigures is everything a campaign's readers report.
type campaignFigures struct {
	Counts     repermit.Counts
	Topics     map[string]int64
	Records    int64 // consent records in the log
	Events     int64 // webhook events in the outbox
	EventTypes map[string]int
	Suppressed map[string]int // by reason
	Timeline   map[repermit.State]int64
	Confirmed  []string // addresses of the confirmed
	Unreached  []string
	TreeSize   int64
}

// runCampaign launches 700 recipients over shards, mails 630 of them,
// has some answer, bounces some and expires the campaign, and returns
// what its readers report.
func runCampaign(t *testing.T, s *redisstore.Store, id string, shards int) campaignFigures {
	t.Helper()
	ctx := context.Background()
	const n, mailed = 700, 630
	launchShards(t, s, id, n, shards)
	idxs := make([]int64, mailed)
	for i := range idxs {
		idxs[i] = int64(i)
	}
	now := t0.Add(time.Minute)
	if errs, err := s.ClaimBatch(ctx, id, idxs, 1, now, time.Minute); err != nil || slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		t.Fatalf("ClaimBatch: %v %v", err, errs)
	}
	if errs, err := s.MarkSentBatch(ctx, id, idxs, 1, now); err != nil || slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		t.Fatalf("MarkSentBatch: %v %v", err, errs)
	}
	// Answers in every bucket, so in every shard.
	states := []repermit.State{repermit.StateConfirmed, repermit.StateDeclined, repermit.StateUnsubscribed}
	for i := 0; i < mailed; i += 7 {
		a := redisstore.Answer{Campaign: id, Index: int64(i), State: states[(i/7)%3], At: now.Add(time.Duration(i) * time.Millisecond),
			IP: "192.0.2.1", UserAgent: "ua", WordingSHA256: strings.Repeat("ab", 32)}
		if a.State == repermit.StateConfirmed {
			a.Topics = []string{"yoga"}
		}
		if _, err := s.Record(ctx, a); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if a.State == repermit.StateConfirmed && i%2 == 0 {
			a.Topics, a.At = []string{"yoga", "events"}, a.At.Add(time.Second)
			if _, err := s.Record(ctx, a); err != nil {
				t.Fatalf("topics of %d: %v", i, err)
			}
		}
	}
	for i := 3; i < mailed; i += 50 {
		r, err := s.Recipient(ctx, id, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if r.State != repermit.StateSent {
			continue // answered
		}
		if err := s.BounceFrom(ctx, r, now.Add(2*time.Second), "smtp"); err != nil {
			t.Fatalf("bounce %d: %v", i, err)
		}
	}
	late := t0.Add(2 * time.Hour)
	for b := int64(0); b < redisstore.Buckets(n); b++ {
		if _, _, err := s.ExpireBucket(ctx, id, b, late); err != nil {
			t.Fatalf("expire bucket %d: %v", b, err)
		}
	}
	if err := s.DrainSuppression(ctx, id); err != nil {
		t.Fatal(err)
	}

	var f campaignFigures
	st, err := s.Stats(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	f.Counts, f.Topics = st.Counts, st.Topics
	if f.Records, f.Events, err = s.WebhookTotals(ctx, id); err != nil {
		t.Fatal(err)
	}
	items, err := s.WebhookItems(ctx, id, redisstore.WebhookState{}, 100000)
	if err != nil {
		t.Fatal(err)
	}
	f.EventTypes = map[string]int{}
	var records int64
	for _, it := range items {
		if it.Event != nil {
			f.EventTypes[it.Event.Type]++
			if it.Event.After > records {
				t.Errorf("event %d after record %d comes before that record", it.Event.N, it.Event.After)
			}
			continue
		}
		records++
	}
	if records != f.Records {
		t.Errorf("webhook items hold %d records, the totals say %d", records, f.Records)
	}
	f.Suppressed = map[string]int{}
	if err := s.Suppressions(ctx, id, func(e redisstore.SuppressionEntry) error {
		f.Suppressed[e.Reason]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tl, err := s.Timeline(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	f.Timeline = map[repermit.State]int64{}
	for state, m := range tl {
		for _, v := range m {
			f.Timeline[state] += v
		}
	}
	for b := int64(0); b < redisstore.Buckets(n); b++ {
		rs, err := s.Bucket(ctx, id, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			switch r.State {
			case repermit.StateConfirmed:
				f.Confirmed = append(f.Confirmed, r.Email)
				if r.LedgerID == "" || strings.HasPrefix(r.LedgerID, "p") {
					t.Errorf("confirmed %d points at %q, not at its record in the log", r.Index, r.LedgerID)
				}
			case repermit.StateUnreached:
				f.Unreached = append(f.Unreached, r.Email)
			}
		}
	}
	// The log: records numbered 1…n in order, every one in the tree.
	var seq int64
	if err := s.RawLedger(ctx, id, -1, func(raw []byte, _ string) error {
		rec, err := repermit.ParseRecord(raw)
		if err != nil {
			return err
		}
		if seq++; rec.Seq != seq {
			return fmt.Errorf("record %d has seq %d", seq, rec.Seq)
		}
		return nil
	}); err != nil {
		t.Fatalf("ledger: %v", err)
	}
	if f.TreeSize, _, err = s.SyncTree(ctx, id); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestShardsReportLikeOneShard: a campaign split over shards sends,
// answers, bounces, expires and reports exactly as one of one shard.
func TestShardsReportLikeOneShard(t *testing.T) {
	s, _ := newStore(t)
	want := runCampaign(t, s, "one", 1)
	if want.Records == 0 || want.Events == 0 || len(want.Confirmed) == 0 || len(want.Unreached) != 70 {
		t.Fatalf("the campaign of one shard did too little to compare: %+v", want)
	}
	// 6 buckets: 5 shards still give every shard one.
	for _, shards := range []int{2, 3, 5} {
		t.Run(fmt.Sprintf("%d shards", shards), func(t *testing.T) {
			s, r := newStore(t)
			id := fmt.Sprintf("split%d", shards)
			got := runCampaign(t, s, id, shards)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("figures differ:\n got %+v\nwant %+v", got, want)
			}
			// Every shard holds keys of its own tag.
			tags := map[string]bool{}
			for _, k := range r.Keys(t) {
				if _, rest, ok := strings.Cut(k, ":{"+id); ok {
					tag, _, _ := strings.Cut(rest, "}")
					tags[tag] = true
				}
			}
			if len(tags) != shards {
				t.Errorf("keys under %d tags (%v), want %d", len(tags), tags, shards)
			}
		})
	}
}

// TestOneShardKeepsItsKeys: a campaign of one shard has exactly the key
// names of before shards, and its meta hash names no shards.
func TestOneShardKeepsItsKeys(t *testing.T) {
	s, r := newStore(t)
	launchShards(t, s, "camp", 300, 1)
	var got []string
	for _, k := range r.Keys(t) {
		got = append(got, strings.TrimPrefix(k, r.Prefix))
	}
	slices.Sort(got)
	want := []string{":campaigns", ":seq", ":seqs", ":{camp}:b:0", ":{camp}:b:1", ":{camp}:b:2", ":{camp}:meta"}
	if !slices.Equal(got, want) {
		t.Errorf("keys %v, want %v", got, want)
	}
	if v, err := r.Client.HGet(context.Background(), r.Prefix+":{camp}:meta", "shards").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("meta names %q shards (%v)", v, err)
	}
}

// TestFailedShardedLaunchLeavesNoKey: an import aborted half-way, and one
// aborted after its commit (the scheduling failed), leave no key of the
// campaign on any node.
func TestFailedShardedLaunchLeavesNoKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		commit bool
	}{{"during the import", false}, {"after the commit", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, r := newStore(t)
			ctx := context.Background()
			var imp *redisstore.Import
			if tc.commit {
				imp = launchShards(t, s, "fail", 3000, 5)
				if _, err := s.Record(ctx, redisstore.Answer{Campaign: "fail", Index: 130, State: repermit.StateDeclined, At: t0}); err != nil {
					t.Fatal(err)
				}
			} else {
				var err error
				imp, err = s.BeginImport(ctx, repermit.Campaign{ID: "fail", Deadline: t0.Add(time.Hour), Shards: 5}, t0)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 20000; i++ {
					if err := imp.Add(ctx, fmt.Sprintf("x%d@example.com", i), "", "", nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := len(r.Keys(t)); n < 10 {
				t.Fatalf("only %d keys before the abort", n)
			}
			if err := imp.Abort(ctx); err != nil {
				t.Fatal(err)
			}
			// The global suppression list keeps what the campaign's
			// decline put there; nothing of the campaign itself stays.
			for _, k := range r.Keys(t) {
				if strings.Contains(k, "{fail") || strings.HasSuffix(k, ":campaigns") || strings.HasSuffix(k, ":seqs") {
					t.Errorf("key left after abort: %s", k)
				}
			}
		})
	}
}

// TestPauseReachesEveryShard: a paused campaign claims in no shard, a
// resumed one in all.
func TestPauseReachesEveryShard(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launchShards(t, s, "p", 1000, 4)
	if err := s.SetStatus(ctx, "p", repermit.StatusPaused, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < 4; b++ {
		if _, err := s.ClaimBatch(ctx, "p", []int64{b * redisstore.BucketSize}, 1, t0, time.Minute); !errors.Is(err, redisstore.ErrNotRunning) {
			t.Errorf("claim in bucket %d while paused: %v, want ErrNotRunning", b, err)
		}
	}
	if err := s.Resume(ctx, "p", false); err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < 4; b++ {
		if errs, err := s.ClaimBatch(ctx, "p", []int64{b * redisstore.BucketSize}, 1, t0, time.Minute); err != nil || errs[0] != nil {
			t.Errorf("claim in bucket %d after resume: %v %v", b, err, errs)
		}
	}
}

// TestConcurrentAnswersAcrossShardsKeepOneLog: answers in all shards at
// once, from two stores (two processes), give one log numbered without a
// gap or a repeat, every record once.
func TestConcurrentAnswersAcrossShardsKeepOneLog(t *testing.T) {
	r := redistest.New(t)
	a, b := redisstore.New(r.Client, r.Prefix), redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	launchShards(t, a, "c", 1280, 3)
	var wg sync.WaitGroup
	errs := make(chan error, 1280)
	for w, s := range []*redisstore.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 1280; i += 4 {
				_, err := s.Record(ctx, redisstore.Answer{Campaign: "c", Index: int64(i), State: repermit.StateConfirmed, At: t0.Add(time.Second)})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	var seq int64
	if err := a.RawLedger(ctx, "c", -1, func(raw []byte, _ string) error {
		rec, err := repermit.ParseRecord(raw)
		if err != nil {
			return err
		}
		if seq++; rec.Seq != seq || seen[rec.Recipient] {
			return fmt.Errorf("record %d: seq %d, recipient %d (seen: %v)", seq, rec.Seq, rec.Recipient, seen[rec.Recipient])
		}
		seen[rec.Recipient] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seq != 1280 {
		t.Errorf("%d records, want 1280", seq)
	}
}

// TestShardedCampaignSpansTheMasters runs on a Redis Cluster (CI's): a
// campaign of 12 shards has keys on every master, and reports as one of
// one shard does (TestShardsReportLikeOneShard runs there too).
func TestShardedCampaignSpansTheMasters(t *testing.T) {
	s, r := newStore(t)
	c, ok := r.Client.(*redis.ClusterClient)
	if !ok {
		t.Skip("not a Redis Cluster")
	}
	ctx := context.Background()
	const shards = 12
	launchShards(t, s, "span", shards*redisstore.BucketSize, shards)
	var mu sync.Mutex
	perMaster := map[string]int{}
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n := 0
		iter := m.Scan(ctx, 0, r.Prefix+":{span*", 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		mu.Lock()
		defer mu.Unlock()
		perMaster[m.Options().Addr] = n
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keys of a campaign of %d shards per master: %v", shards, perMaster)
	for addr, n := range perMaster {
		if n == 0 {
			t.Errorf("master %s holds no key of the campaign (%v)", addr, perMaster)
		}
	}
	if len(perMaster) < 3 {
		t.Errorf("%d masters, want 3", len(perMaster))
	}
	st, err := s.Stats(ctx, "span")
	if err != nil || st.Counts[repermit.StatePending] != shards*redisstore.BucketSize {
		t.Errorf("Stats = %+v, %v", st.Counts, err)
	}
}

// TestAShardThatMissedAResumeCatchesUp: a shard whose copy of the status
// was not written (the copy failed after home was resumed) does not
// refuse claims while home runs.
func TestAShardThatMissedAResumeCatchesUp(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launchShards(t, s, "lag", 1000, 3)
	if err := s.SetStatus(ctx, "lag", repermit.StatusPaused, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	// Home resumed, the shards not told.
	if err := r.Client.HSet(ctx, r.Prefix+":{lag}:meta", "status", string(repermit.StatusRunning)).Err(); err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < 3; b++ {
		if errs, err := s.ClaimBatch(ctx, "lag", []int64{b * redisstore.BucketSize}, 1, t0, time.Minute); err != nil || errs[0] != nil {
			t.Errorf("claim in bucket %d (shard %d): %v %v", b, b, err, errs)
		}
	}
}
