package worker

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
)

// TestLostQueueStillMailsEveryoneOnce deletes every key asynq keeps for the
// queue in the middle of a campaign (its queued send tasks, the feeder's
// chain, the expiry): the sweep re-arms the chain and the reconcile
// re-feeds whom the lost tasks named, so every address still gets its
// initial mail, exactly once.
func TestLostQueueStillMailsEveryoneOnce(t *testing.T) {
	const n = 600
	e := newEnv(t, smtpsink.Options{})
	c := e.launch(repermit.Campaign{Rate: repermit.Rate{PerSecond: 100}}, n, nil)
	e.start(e.config())
	e.waitFor("a third of the mails", 10*time.Second, func() bool { return e.sink.Count() >= n/3 })
	ctx := context.Background()
	// asynq's keys of the queue share its {queue} hash tag: one slot, one
	// node of a cluster.
	var (
		mu   sync.Mutex
		keys []string
	)
	collect := func(ctx context.Context, c redis.UniversalClient) error {
		ks, err := c.Keys(ctx, "asynq:{"+e.r.Prefix+"}:*").Result()
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, ks...)
		return err
	}
	var err error
	if cc, ok := e.r.Client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return collect(ctx, m) })
	} else {
		err = collect(ctx, e.r.Client)
	}
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	if len(keys) > 0 {
		deleted = int(e.r.Client.Del(ctx, keys...).Val())
	}
	if deleted == 0 {
		t.Fatal("no asynq key deleted; the test would not test anything")
	}
	atLoss := e.sink.Count()
	e.waitFor("every address mailed", 30*time.Second, func() bool { return len(e.initialMailed()) == n })
	e.waitSendsDone(30 * time.Second) // a late duplicate would be in the sink now
	t.Logf("deleted %d asynq keys after %d of %d mails; every address mailed", deleted, atLoss, n)
	e.assertNoDuplicates()
	if st := e.stats(c.ID); st.Counts[repermit.StateSent] != n {
		t.Errorf("counts %v, want all %d sent", st.Counts, n)
	}
}

// TestARecipientIsRetriedPastMaxAttempts: a recipient whose server keeps
// answering 451 is not given up after MaxAttempts; it is mailed once the
// server takes it, before the deadline.
func TestARecipientIsRetriedPastMaxAttempts(t *testing.T) {
	const n, stubborn = 20, "r3@example.com"
	e := newEnv(t, smtpsink.Options{Reject: func(rcpt string, attempt int) *smtp.SMTPError {
		if rcpt == stubborn && attempt <= 6 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}})
	c := e.launch(repermit.Campaign{}, n, nil)
	cfg := e.config()
	cfg.MaxAttempts = 2
	cfg.DomainTempFailures = 100
	e.start(cfg)
	e.waitFor("every address mailed", 20*time.Second, func() bool { return len(e.initialMailed()) == n })
	e.assertNoDuplicates()
	if got := e.counters.TemporaryN.Load(); got < 6 {
		t.Errorf("%d temporary failures, want the stubborn address's 6", got)
	}
	if st := e.stats(c.ID); st.Counts[repermit.StateSent] != n {
		t.Errorf("counts %v", st.Counts)
	}
}

// TestReconcileScanSpeed measures one reconcile pass over
// REPERMIT_BENCH_RECONCILE fed and never mailed recipients (e.g. 1000000),
// the worst case: the reconcile cursor stands at the first bucket.
func TestReconcileScanSpeed(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("REPERMIT_BENCH_RECONCILE"))
	if n <= 0 {
		t.Skip("set REPERMIT_BENCH_RECONCILE=N to run")
	}
	e := newEnv(t, smtpsink.Options{Discard: true})
	c := e.launch(repermit.Campaign{StartAt: time.Now().Add(time.Hour)}, n, nil)
	ctx := context.Background()
	began := time.Now()
	waiting, _, err := e.store.Unmailed(ctx, c.ID, 0, redisstore.Buckets(int64(n)), int64(n), 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(began)
	t.Logf("Unmailed over %d recipients (%d buckets): %v, %d waiting", n, redisstore.Buckets(int64(n)), d.Round(time.Millisecond), len(waiting))
	if len(waiting) != n {
		t.Errorf("%d waiting, want %d", len(waiting), n)
	}
}

// TestReconcileFindsALostRecipientAnywhereWithinAFewPasses: each pass reads
// the newest buckets behind the cursor and a rolling window of the older
// ones, so a recipient lost far behind is found after a few passes, and one
// that waits in the first bucket does not make every pass read them all.
func TestReconcileFindsALostRecipientAnywhereWithinAFewPasses(t *testing.T) {
	const n = 16 * redisstore.BucketSize
	e := newEnv(t, smtpsink.Options{})
	c := e.launch(repermit.Campaign{StartAt: time.Now().Add(time.Hour)}, n, nil)
	ctx := context.Background()
	lost := map[int64]bool{5: true, 1500: true, n - 3: true}
	var mailed []int64
	for i := int64(0); i < n; i++ {
		if !lost[i] {
			mailed = append(mailed, i)
		}
	}
	for _, step := range []func() ([]error, error){
		func() ([]error, error) { return e.store.ClaimBatch(ctx, c.ID, mailed, 1, time.Now(), time.Minute) },
		func() ([]error, error) { return e.store.MarkSentBatch(ctx, c.ID, mailed, 1, time.Now()) },
	} {
		if errs, err := step(); err != nil || errors.Join(errs...) != nil {
			t.Fatal(errs, err)
		}
	}
	s, err := New(e.config())
	if err != nil {
		t.Fatal(err)
	}
	s.reconcileWindow = 2
	found := make(map[int64]int) // index -> first pass that found it
	for pass := 1; pass <= 8; pass++ {
		waiting, err := s.scanUnmailed(ctx, c.ID, 1, n, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range waiting {
			if !lost[i] {
				t.Errorf("pass %d: %d reported waiting, but it was mailed", pass, i)
			}
			if found[i] == 0 {
				found[i] = pass
			}
		}
	}
	// Pass 1 reads buckets 0-1 and the newest, 14-15; 1500 (bucket 11) is
	// reached by the rolling window on pass 6.
	want := map[int64]int{5: 1, n - 3: 1, 1500: 6}
	for i, p := range want {
		if found[i] != p {
			t.Errorf("recipient %d found on pass %d, want %d", i, found[i], p)
		}
	}
}

// TestReconcileRereadsWhomTheQueueDoesNotName: the scan reads the states
// before the queue is listed, so a send task that mailed its recipients
// and left the queue in between makes them look lost. They are read again
// after the listing; only those still waiting are fed again.
func TestReconcileRereadsWhomTheQueueDoesNotName(t *testing.T) {
	const n = 2 * redisstore.BucketSize
	e := newEnv(t, smtpsink.Options{})
	c := e.launch(repermit.Campaign{StartAt: time.Now().Add(time.Hour)}, n, nil)
	ctx := context.Background()
	s, err := New(e.config())
	if err != nil {
		t.Fatal(err)
	}
	seen, err := s.scanUnmailed(ctx, c.ID, 1, n, time.Now())
	if err != nil || len(seen) != n {
		t.Fatalf("scan found %d waiting, %v; want %d", len(seen), err, n)
	}
	// A task mails 3, 4 and 200 after the scan, and is gone from the queue
	// before it is listed; 130 is claimed by a task that is still sending.
	done := []int64{3, 4, 200}
	if errs, err := e.store.ClaimBatch(ctx, c.ID, append(done, 130), 1, time.Now(), time.Minute); err != nil || errors.Join(errs...) != nil {
		t.Fatal(errs, err)
	}
	if errs, err := e.store.MarkSentBatch(ctx, c.ID, done, 1, time.Now()); err != nil || errors.Join(errs...) != nil {
		t.Fatal(errs, err)
	}
	lost, err := s.stillUnmailed(ctx, c.ID, 1, n, []int64{2, 3, 4, 130, 200, 201})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{2, 201}; !slices.Equal(lost, want) {
		t.Errorf("still lost %v, want %v", lost, want)
	}
}
