package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// TestSuppressionIsBucketedAndMigrates: the list spreads over many small
// keys, answers a batch lookup for each hash, and a list of the old layout
// (one hash) is read before and moved by MigrateSuppression, twice safely.
func TestSuppressionIsBucketedAndMigrates(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	// 600 addresses reach some 600 of the 65,536 bucket keys; more only
	// slows miniredis, whose TTL clock sorts every key on every command.
	const n = 600
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

// TestExpireBucketSuppressesWithoutADrain: an expired bucket's hashes are
// on the global list and in the campaign's export log when ExpireBucket
// returns, and the campaign's suppression outbox is empty again: the
// expiry does not pile a million entries into one set and read them back.
func TestExpireBucketSuppressesWithoutADrain(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 130)
	mail(t, s, "camp", span(0, 130), t0)
	for b := range redisstore.Buckets(130) {
		if e, _, err := s.ExpireBucket(ctx, "camp", b, t0.Add(2*time.Hour)); err != nil || e == 0 {
			t.Fatalf("ExpireBucket %d = %d, %v", b, e, err)
		}
	}
	hashes := []string{repermit.AddressHash("a0@example.com"), repermit.AddressHash("a129@example.com")}
	sup, err := s.IsSuppressed(ctx, hashes)
	if err != nil || !sup[0] || !sup[1] {
		t.Errorf("IsSuppressed = %v, %v; want both on the list", sup, err)
	}
	for _, k := range r.Keys(t) {
		if strings.HasSuffix(k, "}:supp") {
			t.Errorf("outbox %s still holds %d entries", k, r.Client.SCard(ctx, k).Val())
		}
	}
	logged := map[string]int{}
	err = s.Suppressions(ctx, "camp", func(e redisstore.SuppressionEntry) error {
		if e.Reason != redisstore.ReasonExpired {
			t.Errorf("entry %s: reason %q, want expired", e.Hash, e.Reason)
		}
		logged[e.Hash]++
		return nil
	})
	if err != nil || len(logged) != 130 {
		t.Errorf("export log: %d hashes, %v; want 130", len(logged), err)
	}
	for i := range 130 {
		if h := repermit.AddressHash(fmt.Sprintf("a%d@example.com", i)); logged[h] != 1 {
			t.Errorf("recipient %d is in the export %d times, want once", i, logged[h])
		}
	}
	// A bucket's entries are one key of the log, written in one HSET: the
	// parts by hash prefix held about 250 entries each on a campaign of
	// 1M, and each HSET scanned them.
	for key, want := range map[string]int64{r.Prefix + ":{camp}:suplog:b0": 128, r.Prefix + ":{camp}:suplog:b1": 2} {
		if got := r.Client.HLen(ctx, key).Val(); got != want {
			t.Errorf("%s holds %d entries, want %d", key, got, want)
		}
	}
	for _, k := range r.Keys(t) {
		if rest, ok := strings.CutPrefix(k, r.Prefix+":{camp}:suplog:"); ok && !strings.HasPrefix(rest, "b") {
			t.Errorf("an expiry's entry went to the part by hash %s", k)
		}
	}
}

// TestOutboxEntriesOfBothFormatsReachTheLog: what a transition queued in
// the outbox and no settle took (a crash in between) is drained into the
// campaign's log; an entry queued before entries named their recipient
// goes to the part by hash. The export lists each once.
func TestOutboxEntriesOfBothFormatsReachTheLog(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 3)
	old := repermit.AddressHash("old@example.com")
	recent := repermit.AddressHash("a2@example.com")
	at := fmt.Sprint(t0.UnixMilli())
	r.Client.SAdd(ctx, r.Prefix+":{camp}:supp",
		old+"|"+redisstore.ReasonBounced+"|"+at+"|camp",
		recent+"|"+redisstore.ReasonDeclined+"|"+at+"|camp|2")
	if err := s.DrainSuppression(ctx, "camp"); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err := s.Suppressions(ctx, "camp", func(e redisstore.SuppressionEntry) error {
		if _, dup := got[e.Hash]; dup {
			t.Errorf("%s exported twice", e.Hash)
		}
		got[e.Hash] = e.Reason
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[old] != redisstore.ReasonBounced || got[recent] != redisstore.ReasonDeclined {
		t.Errorf("export = %v; want %s bounced and %s declined", got, old, recent)
	}
	if n := r.Client.HLen(ctx, r.Prefix+":{camp}:suplog:b0").Val(); n != 1 {
		t.Errorf("the bucket's part holds %d entries, want the recent one", n)
	}
	if sup, err := s.IsSuppressed(ctx, []string{old, recent}); err != nil || !sup[0] || !sup[1] {
		t.Errorf("IsSuppressed = %v, %v; want both", sup, err)
	}
}
