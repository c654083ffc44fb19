package ledgerio

import (
	"context"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// BenchmarkCheckpoint measures one checkpoint as the workers make it:
// hash the records appended since the last one into the tree kept in
// Redis, compute the tree hash, sign, store. Each iteration first appends
// 1000 records (a busy minute), untimed. Against a real Redis with
// REPERMIT_TEST_REDIS_URL.
func BenchmarkCheckpoint(b *testing.B) {
	r := redistest.New(b)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	signer, _ := keys(b, "bench")
	const n = 1000
	c := repermit.Campaign{ID: "bench", From: "a@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(1000 * time.Hour), Topics: []string{"yoga", "events"}}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		imp.Add(ctx, "r"+string(rune('a'+i%26))+time.Duration(i).String()+"@example.com", "", "en", nil)
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Imported: n}); err != nil {
		b.Fatal(err)
	}
	topics := [][]string{{"yoga"}, {"events"}}
	round := 0
	for b.Loop() {
		b.StopTimer()
		for i := range int64(n) {
			if _, err := s.Record(ctx, redisstore.Answer{Campaign: "bench", Index: i, State: repermit.StateConfirmed, Topics: topics[round%2], At: t0.Add(time.Duration(round) * time.Minute)}); err != nil {
				b.Fatal(err)
			}
		}
		round++
		b.StartTimer()
		if _, made, err := Checkpoint(ctx, s, "bench", signer, t0.Add(time.Duration(round)*time.Hour), 0); err != nil || !made {
			b.Fatalf("checkpoint: %v %v", made, err)
		}
	}
	b.ReportMetric(float64(n), "records/checkpoint")
}
