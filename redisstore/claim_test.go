package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// TestProductionClaimPath walks the calls the worker makes, in its order,
// and checks each against the recipient states in Redis: ReadForSend,
// ClaimBatch (claimed, busy, not allowed), RenewBatch, Unmailed, Release,
// MarkSentBatch, Bounce and AdvanceCursor.
func TestProductionClaimPath(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 300)
	lease := 20 * time.Second

	status, rs, err := s.ReadForSend(ctx, "camp", []int64{0, 1, 299, 300})
	if err != nil || status != repermit.StatusRunning || rs[0].Email != "a0@example.com" || rs[2] == nil || rs[3] != nil {
		t.Fatalf("ReadForSend = %s %v %v", status, rs, err)
	}

	errs, err := s.ClaimBatch(ctx, "camp", []int64{0, 1, 2, 130}, 1, t0, lease)
	if err != nil || errors.Join(errs...) != nil {
		t.Fatalf("first claim: %v %v", errs, err)
	}
	tests := []struct {
		name string
		at   time.Time
		idx  int64
		want error
	}{
		{"a live claim is busy", t0.Add(lease / 2), 0, redisstore.ErrBusy},
		{"another step is not allowed", t0, 1, redisstore.ErrNotAllowed},
	}
	for _, tt := range tests {
		step := 1
		if tt.want == redisstore.ErrNotAllowed {
			step = 2
		}
		errs, err := s.ClaimBatch(ctx, "camp", []int64{tt.idx}, step, tt.at, lease)
		if err != nil || !errors.Is(errs[0], tt.want) {
			t.Errorf("%s: %v %v, want %v", tt.name, errs, err, tt.want)
		}
	}

	// A renewed claim outlives its first lease; one not renewed does not.
	if errs, err := s.RenewBatch(ctx, "camp", []int64{0, 1}, 1, t0.Add(15*time.Second), lease); err != nil || errors.Join(errs...) != nil {
		t.Fatalf("renew: %v %v", errs, err)
	}
	after := t0.Add(25 * time.Second)
	waiting, open, err := s.Unmailed(ctx, "camp", 0, redisstore.Buckets(300), 200, 1, after)
	if err != nil {
		t.Fatal(err)
	}
	// 0 and 1 are renewed (live), 2 ran out, 3…199 were never claimed; 130
	// ran out too; 200… are beyond the limit.
	want := span(2, 200)
	if !slices.Equal(waiting, want) || open != 0 {
		t.Errorf("Unmailed = %d recipients (first %v), open bucket %d; want 2…199, 0", len(waiting), waiting[:min(3, len(waiting))], open)
	}
	errs, err = s.ClaimBatch(ctx, "camp", []int64{0, 2}, 1, after, lease)
	if err != nil || !errors.Is(errs[0], redisstore.ErrBusy) || errs[1] != nil {
		t.Errorf("claim after 25 s: %v %v; want 0 busy (renewed) and 2 taken over", errs, err)
	}

	// Release hands a live claim back at once; sent and bounced are final.
	if err := s.Release(ctx, "camp", 1, 1, after); err != nil {
		t.Fatal(err)
	}
	if errs, err := s.ClaimBatch(ctx, "camp", []int64{1}, 1, after, lease); err != nil || errs[0] != nil {
		t.Errorf("claim of a released recipient: %v %v", errs, err)
	}
	if errs, err := s.MarkSentBatch(ctx, "camp", []int64{0, 1, 2}, 1, after); err != nil || errors.Join(errs...) != nil {
		t.Errorf("MarkSentBatch: %v %v", errs, err)
	}
	if errs, err := s.MarkSentBatch(ctx, "camp", []int64{0}, 1, after); err != nil || !errors.Is(errs[0], redisstore.ErrNotAllowed) {
		t.Errorf("second MarkSentBatch: %v %v, want ErrNotAllowed", errs, err)
	}
	r130, err := s.Recipient(ctx, "camp", 130)
	if err != nil {
		t.Fatal(err)
	}
	if errs, err := s.ClaimBatch(ctx, "camp", []int64{130}, 1, after, lease); err != nil || errs[0] != nil {
		t.Fatalf("claim 130: %v %v", errs, err)
	}
	if err := s.Bounce(ctx, r130, after); err != nil {
		t.Fatal(err)
	}
	if sup, _ := s.IsSuppressed(ctx, []string{repermit.AddressHash("a130@example.com")}); !sup[0] {
		t.Error("bounced address not suppressed")
	}
	if errs, _ := s.ClaimBatch(ctx, "camp", []int64{130}, 1, after, lease); !errors.Is(errs[0], redisstore.ErrNotAllowed) {
		t.Errorf("claim of a bounced recipient: %v", errs[0])
	}
	assertCounts(t, s, "camp", map[repermit.State]int64{repermit.StateSent: 3, repermit.StateBounced: 1, repermit.StatePending: 296})

	// Once bucket 0 is all mailed, Unmailed reports it done.
	mail(t, s, "camp", span(3, 128), after)
	if _, open, err := s.Unmailed(ctx, "camp", 0, 3, 300, 1, after); err != nil || open != 1 {
		t.Errorf("first open bucket %d (%v), want 1", open, err)
	}

	for _, tt := range []struct {
		from, to int64
		moved    bool
	}{{0, 5, true}, {0, 7, false}, {5, 9, true}} {
		if moved, err := s.AdvanceCursor(ctx, "camp", "feed", tt.from, tt.to); err != nil || moved != tt.moved {
			t.Errorf("AdvanceCursor(%d, %d) = %v %v, want %v", tt.from, tt.to, moved, err, tt.moved)
		}
	}
	if cur, _ := s.Cursor(ctx, "camp", "feed"); cur != 9 {
		t.Errorf("cursor %d, want 9", cur)
	}
}
