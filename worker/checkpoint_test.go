package worker

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/ledgerio"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
)

func ledgerKeys(t *testing.T) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "acme-consent")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := consentlog.NewSigner(skey)
	v, _ := consentlog.NewVerifier(vkey)
	return s, v
}

// witnessed reads the witness file's checkpoints.
func witnessed(t *testing.T, path string, v note.Verifier) []consentlog.Checkpoint {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cps, err := ledgerio.ReadWitness(f, path, v)
	if err != nil {
		t.Fatal(err)
	}
	return cps
}

func (e *env) answer(id string, i int64, st repermit.State) {
	e.t.Helper()
	if _, err := e.store.Record(context.Background(), redisstore.Answer{Campaign: id, Index: i, State: st, At: time.Now()}); err != nil {
		e.t.Fatal(err)
	}
}

// TestCheckpointsLeaveTheBuilding: the workers sign a checkpoint when the
// log grew, no two within the interval, and the witness file receives each;
// the exported log verifies against the witness.
func TestCheckpointsLeaveTheBuilding(t *testing.T) {
	e := newEnv(t, smtpsink.Options{})
	signer, v := ledgerKeys(t)
	path := filepath.Join(t.TempDir(), "witness.jsonl")
	w, err := ledgerio.NewWitness(path)
	if err != nil {
		t.Fatal(err)
	}
	c := e.launch(repermit.Campaign{}, 6, nil)
	cfg := e.config()
	cfg.LedgerSigner, cfg.Witness, cfg.CheckpointInterval = signer, w, 400*time.Millisecond
	e.start(cfg)
	e.start(cfg) // a second worker: still one checkpoint per interval
	for i := range int64(3) {
		e.answer(c.ID, i, repermit.StateConfirmed)
	}
	e.waitFor("a checkpoint of 3 records at the witness", 10*time.Second, func() bool {
		cps := witnessed(t, path, v)
		return len(cps) > 0 && cps[len(cps)-1].Size == 3
	})
	// Right after a checkpoint: the next must still wait its interval.
	for i := range int64(3) {
		e.answer(c.ID, 3+i, repermit.StateDeclined)
	}
	e.waitFor("a checkpoint of 6 records at the witness", 10*time.Second, func() bool {
		cps := witnessed(t, path, v)
		return cps[len(cps)-1].Size == 6
	})
	cps := witnessed(t, path, v)
	for i := 1; i < len(cps); i++ {
		if gap := cps[i].Time.Sub(cps[i-1].Time); gap < cfg.CheckpointInterval {
			t.Errorf("checkpoints %d and %d only %v apart, want at least %v", i, i+1, gap, cfg.CheckpointInterval)
		}
		if cps[i].Size <= cps[i-1].Size {
			t.Errorf("checkpoint %d of %d records after one of %d", i+1, cps[i].Size, cps[i-1].Size)
		}
	}
	var buf bytes.Buffer
	if err := ledgerio.Export(context.Background(), &buf, e.store, c.ID, signer, time.Now()); err != nil {
		t.Fatal(err)
	}
	if sum, err := ledgerio.Verify(bytes.NewReader(buf.Bytes()), "log", v, cps); err != nil || sum.Records != 6 {
		t.Errorf("export against the witness: %+v, %v", sum, err)
	}
	// Cut back to the first checkpoint and re-signed: the witness objects.
	lines := strings.SplitAfter(buf.String(), "\n")
	var cut strings.Builder
	for _, l := range lines {
		cut.WriteString(l)
		if strings.HasPrefix(l, `{"checkpoint"`) {
			break
		}
	}
	if _, err := ledgerio.Verify(strings.NewReader(cut.String()), "log", v, cps); err == nil || !strings.Contains(err.Error(), "records removed from the end") {
		t.Errorf("cut log against the witness: %v", err)
	}
}

// TestCheckpointAtTheDeadline: the answers of the last interval are signed
// at the deadline, not an interval later.
func TestCheckpointAtTheDeadline(t *testing.T) {
	e := newEnv(t, smtpsink.Options{})
	signer, v := ledgerKeys(t)
	path := filepath.Join(t.TempDir(), "witness.jsonl")
	w, _ := ledgerio.NewWitness(path)
	c := e.launch(repermit.Campaign{StartAt: time.Now(), Deadline: time.Now().Add(3 * time.Second)}, 4, nil)
	for i := range int64(2) {
		e.answer(c.ID, i, repermit.StateConfirmed)
	}
	cfg := e.config()
	cfg.LedgerSigner, cfg.Witness, cfg.CheckpointInterval = signer, w, time.Hour
	e.start(cfg)
	e.waitFor("the first round's checkpoint", 10*time.Second, func() bool { return len(witnessed(t, path, v)) == 1 })
	e.answer(c.ID, 2, repermit.StateDeclined)
	e.waitFor("the campaign to finish", 20*time.Second, func() bool { return e.status(c.ID) == repermit.StatusFinished })
	e.waitFor("the deadline's checkpoint", 5*time.Second, func() bool {
		cps := witnessed(t, path, v)
		return len(cps) == 2 && cps[1].Size == 3
	})
}
