package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redistest"
)

// gateHook holds the first HMGET until gate is closed, and counts the
// round trips of HMGETs: single commands and pipelines.
type gateHook struct {
	gate, held chan struct{}
	first      atomic.Bool
	singles    atomic.Int64
	pipelines  atomic.Int64
	piped      atomic.Int64
}

func (h *gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hmget" {
			h.singles.Add(1)
			if h.first.CompareAndSwap(false, true) {
				close(h.held)
				<-h.gate
			}
		}
		return next(ctx, cmd)
	}
}
func (h *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, c := range cmds {
			if c.Name() == "hmget" {
				n++
			}
		}
		if n > 0 {
			h.pipelines.Add(1)
			h.piped.Add(int64(n))
		}
		return next(ctx, cmds)
	}
}

// TestReadsInFlightShareOneRoundTrip: while one recipient read is on its
// way, the reads that arrive wait and then go out together in one
// pipeline; each gets its own recipient. A read whose request ends while
// it waits returns at once and holds up nobody.
func TestReadsInFlightShareOneRoundTrip(t *testing.T) {
	r := redistest.New(t)
	s := New(r.Client, r.Prefix)
	ctx := context.Background()
	const n = 40
	imp, err := s.BeginImport(ctx, repermit.Campaign{ID: "camp", From: "news@acme.example", Subject: "s", StartAt: t0(), Deadline: t0().Add(time.Hour)}, t0())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := imp.Add(ctx, fmt.Sprintf("a%d@example.com", i), "", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "camp", Imported: n}); err != nil {
		t.Fatal(err)
	}
	// The first read of a campaign also reads its column names; only the
	// recipients' own reads are counted below.
	if _, err := s.Recipient(ctx, "camp", 0); err != nil {
		t.Fatal(err)
	}
	h := &gateHook{gate: make(chan struct{}), held: make(chan struct{})}
	r.Client.AddHook(h)

	type got struct {
		idx int
		rec *repermit.Recipient
		err error
	}
	results := make(chan got, n)
	read := func(ctx context.Context, idx int) {
		rec, err := s.Recipient(ctx, "camp", int64(idx))
		results <- got{idx, rec, err}
	}
	go read(ctx, 0)
	<-h.held // the first read is on its way and held there
	ended, cancel := context.WithCancel(ctx)
	go read(ended, n) // no such recipient; its request ends while it waits
	for i := 1; i < n; i++ {
		go read(ctx, i)
	}
	waitFor(t, func() bool {
		s.reads.mu.Lock()
		defer s.reads.mu.Unlock()
		return len(s.reads.waiting) == n
	})
	cancel()
	if g := <-results; g.idx != n || !errors.Is(g.err, context.Canceled) {
		t.Fatalf("read of an ended request: recipient %d, %v; want recipient %d, context.Canceled", g.idx, g.err, n)
	}
	close(h.gate)
	for range n {
		g := <-results
		switch {
		case g.err != nil:
			t.Errorf("read %d: %v", g.idx, g.err)
		case g.rec.Index != int64(g.idx) || g.rec.Email != fmt.Sprintf("a%d@example.com", g.idx):
			t.Errorf("read %d got recipient %d %q", g.idx, g.rec.Index, g.rec.Email)
		}
	}
	if s, p, c := h.singles.Load(), h.pipelines.Load(), h.piped.Load(); s != 1 || p != 1 || c != n-1 {
		t.Errorf("round trips: %d single reads and %d pipelines of %d reads; want 1 and 1 of %d", s, p, c, n-1)
	}
	// Nothing is left waiting or leading: the next read goes out alone.
	if _, err := s.Recipient(ctx, "camp", 1); err != nil {
		t.Fatal(err)
	}
	if got := h.singles.Load(); got != 2 {
		t.Errorf("a lone read after the batch made %d single reads in all, want 2", got)
	}
}

func t0() time.Time { return time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
