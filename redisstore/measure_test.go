package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// TestPackedSizeIsWhatTheBucketHolds: the bench's PackedSize is the
// length of the data an import stores for a recipient, over all the
// values it is split into.
func TestPackedSizeIsWhatTheBucketHolds(t *testing.T) {
	type row struct {
		email, name, locale string
		extra               map[string]string
	}
	rows := []row{
		{"a@gmail.com", "", "", nil},
		{"someone@example.org", "Some One", "de", nil},
		{"x@example.org", "X", "tlh", map[string]string{"city": "Köln"}},
		{"long@example.org", strings.Repeat("n", 200), "en", map[string]string{"city": "Köln", "zip": strings.Repeat("9", 80)}},
		{"no-at-sign", "", "", nil},
	}
	s, r := newStore(t)
	ctx := context.Background()
	imp, err := s.BeginImport(ctx, repermit.Campaign{ID: "camp", StartAt: t0, Deadline: t0.Add(time.Hour)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, rw := range rows {
		mustDo(t, imp.Add(ctx, rw.email, rw.name, rw.locale, rw.extra))
	}
	mustDo(t, imp.Commit(ctx, repermit.ImportResult{Campaign: "camp", Imported: int64(len(rows))}))
	bucket, err := r.Client.HGetAll(ctx, r.Prefix+":{camp}:b:0").Result()
	mustDo(t, err)
	for i, rw := range rows {
		stored := 0
		for _, f := range []string{"d", "e", "f", "g"} {
			stored += len(bucket[fmt.Sprint(f, i)])
		}
		if got := redisstore.PackedSize(rw.email, rw.name, rw.locale, rw.extra); got != stored {
			t.Errorf("PackedSize(%q) = %d; the bucket holds %d bytes", rw.email, got, stored)
		}
	}
}

// TestUsedMemoryIsAllOfRedis: the bench's UsedMemory covers at least the
// keys of this test; miniredis, which has no INFO memory, is an error
// rather than a zero.
func TestUsedMemoryIsAllOfRedis(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	mustDo(t, r.Client.Set(ctx, r.Prefix+":blob", strings.Repeat("x", 1<<20), 0).Err())
	used, err := s.UsedMemory(ctx)
	if !redistest.Real() {
		if err == nil {
			t.Errorf("UsedMemory on miniredis = %d, nil; want an error", used)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	mine, err := s.MemoryUnder(ctx, r.Prefix+":*")
	if err != nil {
		t.Fatal(err)
	}
	if mine < 1<<20 || used < mine {
		t.Errorf("UsedMemory = %d, the test's keys take %d; want at least that and 1 MiB", used, mine)
	}
}
