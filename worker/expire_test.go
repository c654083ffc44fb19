package worker

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
)

// TestExpireIsResumable expires a campaign whose expiry crashed half-way
// (the cursor stands in the middle, the first buckets are expired) and
// checks the counts add up and a repeated run changes nothing.
func TestExpireIsResumable(t *testing.T) {
	const n = 1000
	e := newEnv(t, smtpsink.Options{})
	start := time.Now().Add(-time.Hour)
	c := e.launch(repermit.Campaign{StartAt: start, Deadline: start.Add(30 * time.Minute)}, n, nil)
	ctx := context.Background()
	mailAll(t, e, c.ID, n, start)
	for b := int64(0); b < 3; b++ {
		if _, _, err := e.store.ExpireBucket(ctx, c.ID, b, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := e.store.AdvanceCursor(ctx, c.ID, cursorExpire, 0, 3); err != nil || !ok {
		t.Fatalf("AdvanceCursor: %v %v", ok, err)
	}
	s, err := New(e.config())
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := s.expire(ctx, &c)
	if err != nil {
		t.Fatal(err)
	}
	if got != n-3*128 {
		t.Errorf("resumed run expired %d, want %d", got, n-3*128)
	}
	if again, _, err := s.expire(ctx, &c); err != nil || again != 0 {
		t.Errorf("second run expired %d (%v), want 0", again, err)
	}
	if st := e.stats(c.ID); st.Counts[repermit.StateExpired] != n || st.Counts.Total() != n {
		t.Errorf("counts: %v", st.Counts)
	}
}

// TestExpireSpeed measures the expiry of REPERMIT_BENCH_EXPIRE silent
// recipients (e.g. 1000000; the goal is 20 s for a million).
func TestExpireSpeed(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("REPERMIT_BENCH_EXPIRE"))
	if n <= 0 {
		t.Skip("set REPERMIT_BENCH_EXPIRE=N to run")
	}
	e := newEnv(t, smtpsink.Options{})
	start := time.Now().Add(-time.Hour)
	c := e.launch(repermit.Campaign{StartAt: start, Deadline: start.Add(30 * time.Minute)}, n, nil)
	mailAll(t, e, c.ID, n, start)
	s, err := New(e.config())
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	got, _, err := s.expire(context.Background(), &c)
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(began)
	t.Logf("expired %d in %v: %.0f/s", got, d.Round(time.Millisecond), float64(got)/d.Seconds())
	if got != int64(n) {
		t.Errorf("expired %d, want %d", got, n)
	}
}

// mailAll records the initial mail of every recipient through the claim
// path, so that the deadline expires them rather than keep them unreached.
func mailAll(t *testing.T, e *env, id string, n int, at time.Time) {
	t.Helper()
	ctx := context.Background()
	for lo := 0; lo < n; lo += redisstore.BucketSize {
		var idxs []int64
		for i := lo; i < min(n, lo+redisstore.BucketSize); i++ {
			idxs = append(idxs, int64(i))
		}
		errs, err := e.store.ClaimBatch(ctx, id, idxs, 1, at, time.Minute)
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			t.Fatal(err)
		}
		if errs, err = e.store.MarkSentBatch(ctx, id, idxs, 1, at); err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
