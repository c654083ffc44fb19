package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redistest"
)

// TestRetryWaitEndsWithTheContext: the wait between two attempts of an
// answer ends when the request does, not when the jitter runs out.
func TestRetryWaitEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleep with an ended context = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("sleep took %v after its context ended", d)
	}
	if err := sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("sleep of 1ms = %v", err)
	}
}

// TestStaleLedgerHeadCostsOneRetryAndNoQueue: another process moved the
// ledger head; the answer is retried on the head the script hands back,
// chains correctly, and leaves no queue behind it.
func TestStaleLedgerHeadCostsOneRetryAndNoQueue(t *testing.T) {
	r := redistest.New(t)
	s := New(r.Client, r.Prefix)
	other := New(r.Client, r.Prefix) // a second web process
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	imp, err := s.BeginImport(ctx, repermit.Campaign{ID: "camp", From: "news@acme.example", Subject: "s", StartAt: now, Deadline: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"a@example.com", "b@example.com"} {
		if err := imp.Add(ctx, a, "", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "camp", Imported: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, Answer{Campaign: "camp", Index: 0, State: repermit.StateConfirmed, At: now}); err != nil {
		t.Fatal(err)
	}
	// s caches the head after its answer; other appends behind its back.
	if _, err := other.Record(ctx, Answer{Campaign: "camp", Index: 1, State: repermit.StateDeclined, At: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, Answer{Campaign: "camp", Index: 0, State: repermit.StateUnsubscribed, At: now}); err != nil {
		t.Fatalf("answer on a stale head: %v", err)
	}
	var recs []repermit.ConsentRecord
	if err := s.Ledger(ctx, "camp", func(r repermit.ConsentRecord, _ string) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("ledger has %d records, want 3", len(recs))
	}
	if err := repermit.CheckSequence(recs); err != nil {
		t.Errorf("chain broken: %v", err)
	}
	s.ledger.mu.Lock()
	left := len(s.ledger.queues)
	s.ledger.mu.Unlock()
	if left != 0 {
		t.Errorf("%d campaign queues still kept after every answer returned", left)
	}
}
