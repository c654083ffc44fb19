package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// TestSuppressionIsBucketedAndMigrates: the list spreads over many small
// keys, answers a batch lookup for each hash, and a list of the old layout
// (one hash) is read before and moved by MigrateSuppression, twice safely.
func TestSuppressionIsBucketedAndMigrates(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	const n = 2000
	var on, off []string
	for i := range n {
		on = append(on, repermit.AddressHash(fmt.Sprintf("s%d@example.com", i)))
		off = append(off, repermit.AddressHash(fmt.Sprintf("n%d@example.com", i)))
	}
	if err := s.AddSuppression(ctx, redisstore.ReasonDeclined, "camp", t0, on[:n/2]...); err != nil {
		t.Fatal(err)
	}
	// The rest as the old layout kept them.
	legacy := r.Prefix + ":suppression"
	for _, h := range on[n/2:] {
		r.Client.HSet(ctx, legacy, h, redisstore.ReasonBounced+"|"+fmt.Sprint(t0.UnixMilli())+"|old")
	}
	check := func(when string) {
		t.Helper()
		got, err := s.IsSuppressed(ctx, append(append([]string{}, on...), off...))
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range got {
			if g != (i < n) {
				t.Fatalf("%s: IsSuppressed[%d] = %v", when, i, g)
			}
		}
	}
	check("before the migration")
	moved, err := s.MigrateSuppression(ctx)
	if err != nil || moved != n/2 {
		t.Fatalf("MigrateSuppression = %d, %v; want %d", moved, err, n/2)
	}
	if again, err := s.MigrateSuppression(ctx); err != nil || again != 0 {
		t.Fatalf("second MigrateSuppression = %d, %v; want 0", again, err)
	}
	check("after the migration")
	keys := 0
	for _, k := range r.Keys(t) {
		if k == legacy {
			t.Errorf("the old list is still there")
		}
		if strings.HasPrefix(k, r.Prefix+":sup:{") {
			keys++
		}
	}
	if keys < n/2 {
		t.Errorf("%d addresses in %d keys, want them spread over many", n, keys)
	}
	count := map[string]int{}
	for _, id := range []string{"camp", "old"} {
		err := s.Suppressions(ctx, id, func(e redisstore.SuppressionEntry) error {
			if !e.At.Equal(t0) {
				t.Errorf("%s: time %v, want %v", id, e.At, t0)
			}
			count[id+"|"+e.Reason]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if count["camp|"+redisstore.ReasonDeclined] != n/2 || count["old|"+redisstore.ReasonBounced] != n/2 {
		t.Errorf("per campaign and reason: %v", count)
	}
}
