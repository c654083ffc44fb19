package ledgerio

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// TestShardedCampaignLogVerifies: the answers of a campaign split over
// three shards (redisstore, shard.go) form one consent log whose export
// verifies, and a person answering in a shard other than home gets a
// proof bundle that verifies with the public key alone.
func TestShardedCampaignLogVerifies(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	signer, v := keys(t, "acme-consent")
	c := repermit.Campaign{ID: "split", From: "a@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(24 * time.Hour),
		Topics: []string{"yoga", "events"}, Shards: 3}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4 * redisstore.BucketSize // buckets 0…3 in shards 0, 1, 2, 0
	for i := range n {
		if err := imp.Add(ctx, fmt.Sprintf("r%d@example.com", i), "", "en", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Imported: n}); err != nil {
		t.Fatal(err)
	}
	answered := []int{5, 130, 260, 390, 131, 6}
	for j, i := range answered {
		answer(t, s, "split", i, repermit.StateConfirmed, "yoga")
		if j == 2 {
			if _, made, err := Checkpoint(ctx, s, "split", signer, t0.Add(200*time.Minute), 0); err != nil || !made {
				t.Fatalf("checkpoint: made %v, %v", made, err)
			}
		}
	}
	answer(t, s, "split", 130, repermit.StateDeclined)

	var buf bytes.Buffer
	if err := Export(ctx, &buf, s, "split", signer, t0.Add(10*time.Hour)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	sum, err := verify(lines, v)
	if err != nil || sum.Records != int64(len(answered)+1) || sum.Checkpoints != 2 {
		t.Fatalf("Verify = %+v, %v; want %d records, 2 checkpoints", sum, err, len(answered)+1)
	}

	res, err := Proof(ctx, s, "r130@example.com", "split", signer, t0.Add(11*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	data, err := res.Bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	proven, _, err := consentlog.VerifyBundle(data, v)
	if err != nil {
		t.Fatalf("VerifyBundle: %v", err)
	}
	if len(proven) != 2 || proven[0].Record.Answer != repermit.StateConfirmed || proven[1].Record.Answer != repermit.StateDeclined ||
		proven[1].Record.Recipient != 130 {
		t.Errorf("proof of recipient 130 holds %+v", proven)
	}
}
