package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// BenchmarkTransition measures the state change every mail makes: Claim
// before the SMTP step and MarkSent after it, two script calls and the read
// of the recipient. Each round over the recipients claims the next step,
// so every iteration is a real change, never a refused one.
func BenchmarkTransition(b *testing.B) {
	r := redistest.New(b)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	now := time.Now()
	const n = 4 * redisstore.BucketSize
	c := repermit.Campaign{ID: "bench", From: "news@acme.example", Subject: "s", StartAt: now, Deadline: now.Add(24 * time.Hour)}
	imp, err := s.BeginImport(ctx, c, now)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := imp.Add(ctx, "reader"+strconv.Itoa(i)+"@example.com", "Reader", "en", nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: c.ID, Imported: n}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		idx, step := int64(i%n), i/n+1
		if errs, err := s.ClaimBatch(ctx, c.ID, []int64{idx}, step, now, time.Minute); err != nil || errs[0] != nil {
			b.Fatalf("claim %d step %d: %v %v", idx, step, errs, err)
		}
		if err := s.MarkSent(ctx, c.ID, idx, step, now); err != nil {
			b.Fatalf("mark sent %d step %d: %v", idx, step, err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "transitions/s")
}

// BenchmarkExpireBucket measures the deadline's work per bucket: 128
// mailed and silent recipients with names and extra columns become
// expired, their rows erased, their hashes put on the suppression list.
// Each iteration expires a freshly launched and mailed campaign of 16
// buckets; only the expiry is timed.
func BenchmarkExpireBucket(b *testing.B) {
	r := redistest.New(b)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	now := time.Now()
	const buckets = 16
	const n = buckets * redisstore.BucketSize
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		c := repermit.Campaign{ID: "bench" + strconv.Itoa(round), From: "news@acme.example", Subject: "s", StartAt: now, Deadline: now.Add(24 * time.Hour)}
		imp, err := s.BeginImport(ctx, c, now)
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			extra := map[string]string{"company": "Reader Holdings " + strconv.Itoa(i%97), "customer_id": strconv.Itoa(1000000 + i)}
			if err := imp.Add(ctx, "firstname.lastname"+strconv.Itoa(i)+"@example.com", "Firstname Middlename Lastname-Other", "de", extra); err != nil {
				b.Fatal(err)
			}
		}
		if err := imp.Commit(ctx, repermit.ImportResult{Campaign: c.ID, Imported: n}); err != nil {
			b.Fatal(err)
		}
		for bk := int64(0); bk < buckets; bk++ {
			idxs := make([]int64, 0, redisstore.BucketSize)
			for i := bk * redisstore.BucketSize; i < (bk+1)*redisstore.BucketSize; i++ {
				idxs = append(idxs, i)
			}
			if _, err := s.ClaimBatch(ctx, c.ID, idxs, 1, now, time.Minute); err != nil {
				b.Fatal(err)
			}
			if _, err := s.MarkSentBatch(ctx, c.ID, idxs, 1, now); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		for bk := int64(0); bk < buckets; bk++ {
			if e, _, err := s.ExpireBucket(ctx, c.ID, bk, now.Add(time.Hour)); err != nil || e != redisstore.BucketSize {
				b.Fatalf("bucket %d: %d expired, %v", bk, e, err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*buckets), "µs/bucket")
}
