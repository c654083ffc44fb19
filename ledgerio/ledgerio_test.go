package ledgerio

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// keys returns a signer and its verifier, named name.
func keys(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := consentlog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := consentlog.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// launch imports n recipients r0@example.com … into campaign id.
func launch(t *testing.T, s *redisstore.Store, id string, n int) {
	t.Helper()
	ctx := context.Background()
	c := repermit.Campaign{ID: id, From: "a@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour), Topics: []string{"yoga", "events"}}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := imp.Add(ctx, fmt.Sprintf("r%d@example.com", i), "", "en", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Imported: int64(n)}); err != nil {
		t.Fatal(err)
	}
}

// answer records recipient i's answer at minute i.
func answer(t *testing.T, s *redisstore.Store, id string, i int, st repermit.State, topics ...string) {
	t.Helper()
	a := redisstore.Answer{Campaign: id, Index: int64(i), State: st, Topics: topics,
		At: t0.Add(time.Duration(i) * time.Minute), IP: "192.0.2.0", UserAgent: "ua",
		WordingSHA256: wordingSum, Wording: []byte(wordingText)}
	if _, err := s.Record(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

const wordingText = "<p>Do you still want ACME News? <b>Yes</b> & \"no\"</p>"

var wordingSum = func() string {
	sum := sha256.Sum256([]byte(wordingText))
	return hex.EncodeToString(sum[:])
}()

// exported launches a campaign of 7 recipients, answers each (confirm,
// decline, unsubscribe in turn) with checkpoints after records 3 and 5,
// and returns the export's lines: header, 7 records with checkpoints
// after lines 4, 7 (records 3, 5) and the last one at the end.
func exported(t *testing.T, signer note.Signer) []string {
	t.Helper()
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	launch(t, s, "led", 7)
	states := []repermit.State{repermit.StateConfirmed, repermit.StateDeclined, repermit.StateUnsubscribed}
	for i := range 7 {
		var topics []string
		if states[i%3] == repermit.StateConfirmed {
			topics = []string{"yoga"}
		}
		answer(t, s, "led", i, states[i%3], topics...)
		if i == 2 || i == 4 {
			if _, made, err := Checkpoint(ctx, s, "led", signer, t0.Add(time.Duration(i)*time.Minute), time.Minute); err != nil || !made {
				t.Fatalf("checkpoint after record %d: made %v, %v", i+1, made, err)
			}
		}
	}
	var buf bytes.Buffer
	if err := Export(ctx, &buf, s, "led", signer, t0.Add(time.Hour)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

func verify(lines []string, v note.Verifier, witnessed ...consentlog.Checkpoint) (consentlog.Summary, error) {
	return Verify(strings.NewReader(strings.Join(lines, "\n")+"\n"), "ledger.jsonl", v, witnessed)
}

func TestExportVerifies(t *testing.T) {
	signer, v := keys(t, "acme-consent")
	lines := exported(t, signer)
	if len(lines) != 11 {
		t.Fatalf("%d lines, want header, 7 records and 3 checkpoints:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, i := range []int{4, 7, 10} {
		if !strings.HasPrefix(lines[i], `{"checkpoint":"repermit consent log led\n`) {
			t.Errorf("line %d is not a checkpoint: %s", i+1, lines[i])
		}
	}
	sum, err := verify(lines, v)
	if err != nil || sum.Records != 7 || sum.Checkpoints != 3 || sum.Campaign != "led" {
		t.Errorf("Verify = %+v, %v; want 7 records, 3 checkpoints", sum, err)
	}
	for _, l := range lines[1:] {
		if strings.Contains(l, "@example.com") {
			t.Errorf("the log holds an address: %s", l)
		}
	}
}

// edit rewrites line i's record with f, re-encoded canonically.
func edit(t *testing.T, lines []string, i int, f func(*repermit.ConsentRecord)) []string {
	t.Helper()
	out := append([]string(nil), lines...)
	rec, err := repermit.ParseRecord([]byte(out[i]))
	if err != nil {
		t.Fatal(err)
	}
	f(&rec)
	out[i] = string(rec.Canonical())
	return out
}

func without(lines []string, idx ...int) []string {
	var out []string
	for i, l := range lines {
		skip := false
		for _, j := range idx {
			skip = skip || i == j
		}
		if !skip {
			out = append(out, l)
		}
	}
	return out
}

// resign replaces the checkpoint on line i with one over the records above
// it, signed by signer: what a forger recomputes.
func resign(t *testing.T, lines []string, i int, signer note.Signer) []string {
	t.Helper()
	out := append([]string(nil), lines...)
	var tree consentlog.Tree
	for _, l := range out[1:i] {
		if strings.HasPrefix(l, `{"checkpoint"`) {
			continue
		}
		rec, err := repermit.ParseRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		tree.Add(rec.LeafHash())
	}
	h, err := tree.Hash(tree.Size())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := consentlog.Sign(consentlog.Checkpoint{Campaign: "led", Size: tree.Size(), Hash: h, Time: t0.Add(2 * time.Hour)}, signer)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(consentlog.CheckpointLine{Checkpoint: msg})
	out[i] = string(b)
	return out
}

// renumber sets each record's seq to its position, as a forger who removes
// or moves records would.
func renumber(t *testing.T, lines []string) []string {
	t.Helper()
	out := append([]string(nil), lines...)
	seq := int64(0)
	for i := 1; i < len(out); i++ {
		if strings.HasPrefix(out[i], `{"checkpoint"`) {
			continue
		}
		seq++
		out = edit(t, out, i, func(r *repermit.ConsentRecord) { r.Seq = seq })
	}
	return out
}

// TestForgeriesAreRejectedNamingTheLine holds each forgery of the issue:
// edit, delete, append, truncate (with hashes and the last checkpoint
// recomputed by someone without the key), duplicate and upper-case keys,
// reordering; each is refused with the line that is wrong.
func TestForgeriesAreRejectedNamingTheLine(t *testing.T) {
	signer, v := keys(t, "acme-consent")
	forger, _ := keys(t, "acme-consent") // same name, another key
	lines := exported(t, signer)
	// Lines (1-based): 1 header; 2,3,4 records 1-3; 5 checkpoint of 3;
	// 6,7 records 4-5; 8 checkpoint of 5; 9,10 records 6-7; 11 checkpoint of 7.
	declined := func(r *repermit.ConsentRecord) { r.Answer = repermit.StateDeclined; r.Topics = nil }
	appended := edit(t, append(append([]string(nil), lines...), lines[9]), 11, func(r *repermit.ConsentRecord) { r.Seq = 8 })
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"edited answer", edit(t, lines, 9, declined), "ledger.jsonl:11: the records on lines 9-10 do not hash to this signed checkpoint"},
		{"edited ip in the first part", edit(t, lines, 2, func(r *repermit.ConsentRecord) { r.IP = "203.0.113.9" }), "ledger.jsonl:5: the records on lines 2-4 do not hash"},
		{"edited, checkpoint re-signed by a forger", resign(t, edit(t, lines, 9, declined), 10, forger), "ledger.jsonl:11: checkpoint signature"},
		{"deleted record", without(lines, 5), "ledger.jsonl:6: sequence 5, want 4"},
		{"deleted record, renumbered", renumber(t, without(lines, 5)), "ledger.jsonl:7: checkpoint signs 5 records, 4 stand before it"},
		{"deleted record, renumbered, re-signed", resign(t, renumber(t, without(lines, 8)), 9, forger), "ledger.jsonl:10: checkpoint signature"},
		{"appended record", appended, "ledger.jsonl:12: no signed checkpoint covers this record"},
		{"appended record, re-signed", resign(t, append(appended, lines[10]), 12, forger), "ledger.jsonl:13: checkpoint signature"},
		{"truncated, last checkpoint kept", without(lines, 8, 9), "ledger.jsonl:9: checkpoint signs 7 records, 5 stand before it"},
		{"truncated, last checkpoint re-signed", resign(t, without(lines, 9), 9, forger), "ledger.jsonl:10: checkpoint signature"},
		{"truncated after a record", lines[:6], "ledger.jsonl:6: no signed checkpoint covers this record"},
		{"duplicate key", func() []string {
			out := append([]string(nil), lines...)
			out[1] = strings.Replace(out[1], `"answer":"confirmed"`, `"answer":"declined","answer":"confirmed"`, 1)
			return out
		}(), `ledger.jsonl:2: duplicate key "answer"`},
		{"upper-case key", func() []string {
			out := append([]string(nil), lines...)
			out[3] = strings.Replace(out[3], `"answer":`, `"Answer":`, 1)
			return out
		}(), `ledger.jsonl:4: unknown key "Answer"`},
		{"unknown key", func() []string {
			out := append([]string(nil), lines...)
			out[6] = strings.Replace(out[6], `{"seq":5,`, `{"seq":5,"note":"x",`, 1)
			return out
		}(), `ledger.jsonl:7: unknown key "note"`},
		{"spacing", func() []string {
			out := append([]string(nil), lines...)
			out[6] = strings.Replace(out[6], `"seq":5,`, `"seq": 5,`, 1)
			return out
		}(), "ledger.jsonl:7: record is not in canonical form"},
		{"escaped letter", func() []string {
			out := append([]string(nil), lines...)
			out[6] = strings.Replace(out[6], `"campaign":"led"`, `"campaign":"l\u0065d"`, 1)
			return out
		}(), "ledger.jsonl:7: record is not in canonical form"},
		{"swapped records", func() []string {
			out := append([]string(nil), lines...)
			out[2], out[3] = out[3], out[2]
			return out
		}(), "ledger.jsonl:3: sequence 3, want 2"},
		{"swapped records, renumbered", func() []string {
			out := append([]string(nil), lines...)
			out[5], out[6] = out[6], out[5]
			return renumber(t, out)
		}(), "ledger.jsonl:8: the records on lines 6-7 do not hash"},
		{"header of another campaign", append([]string{`{"log":"repermit consent log","campaign":"other"}`}, lines[1:]...), `ledger.jsonl:2: record of campaign "led" in the log of "other"`},
		{"garbage", append(append([]string(nil), lines[:2]...), append([]string{"{"}, lines[2:]...)...), "ledger.jsonl:3: not"},
	} {
		_, err := verify(tc.lines, v)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v\nwant it to contain %q", tc.name, err, tc.want)
			continue
		}
		if repermit.ErrorCode(err) != repermit.EINVALID {
			t.Errorf("%s: code %s, want EINVALID", tc.name, repermit.ErrorCode(err))
		}
	}
}

// TestWitnessCatchesRewriteBehindASentCheckpoint: whoever holds the
// signing key can cut the log back to an earlier checkpoint, or rewrite it
// and sign anew, and the file alone verifies; a checkpoint that was sent
// out before does not match it.
func TestWitnessCatchesRewriteBehindASentCheckpoint(t *testing.T) {
	signer, v := keys(t, "acme-consent")
	lines := exported(t, signer)
	var last consentlog.CheckpointLine
	if err := json.Unmarshal([]byte(lines[10]), &last); err != nil {
		t.Fatal(err)
	}
	sent, err := consentlog.Open(last.Checkpoint, v)
	if err != nil {
		t.Fatal(err)
	}
	cut := lines[:8] // back to the checkpoint of 5
	if _, err := verify(cut, v); err != nil {
		t.Fatalf("the cut log alone should verify (no one could know), got %v", err)
	}
	if _, err := verify(cut, v, sent); err == nil || !strings.Contains(err.Error(), "a witnessed checkpoint of 2026-12-01T10:00:00.000Z signs 7 (records removed from the end)") {
		t.Errorf("cut log against the witness: %v", err)
	}
	rewritten := resign(t, edit(t, lines, 9, func(r *repermit.ConsentRecord) { r.Answer = repermit.StateDeclined; r.Topics = nil }), 10, signer)
	if _, err := verify(rewritten, v); err != nil {
		t.Fatalf("re-signed by the key holder, the log alone verifies: %v", err)
	}
	if _, err := verify(rewritten, v, sent); err == nil || !strings.Contains(err.Error(), "the first 7 records differ from the witnessed checkpoint") {
		t.Errorf("rewritten log against the witness: %v", err)
	}
	if _, err := verify(lines, v, sent); err != nil {
		t.Errorf("the true log against the witness: %v", err)
	}
}

func TestWrongKeyIsRejected(t *testing.T) {
	signer, _ := keys(t, "acme-consent")
	_, other := keys(t, "acme-consent")
	lines := exported(t, signer)
	if _, err := verify(lines, other); err == nil || !strings.Contains(err.Error(), "ledger.jsonl:5: checkpoint signature") {
		t.Errorf("log checked with another key: %v", err)
	}
}

// TestExportNeedsTheKeyForUnsignedRecords: records after the last
// checkpoint can be exported only by whoever can sign them.
func TestExportNeedsTheKeyForUnsignedRecords(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	launch(t, s, "led", 1)
	answer(t, s, "led", 0, repermit.StateDeclined)
	var buf bytes.Buffer
	err := Export(context.Background(), &buf, s, "led", nil, t0)
	if err == nil || !strings.Contains(err.Error(), "REPERMIT_LEDGER_KEY is needed") || buf.Len() != 0 {
		t.Errorf("export without key: %v, wrote %q", err, buf.String())
	}
}

func TestExportOfUnknownCampaignIsNotFound(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	signer, _ := keys(t, "k")
	var buf bytes.Buffer
	err := Export(context.Background(), &buf, s, "nope", signer, t0)
	if repermit.ErrorCode(err) != repermit.ENOTFOUND || buf.Len() != 0 {
		t.Errorf("Export of unknown campaign: %v, wrote %q", err, buf.String())
	}
}

func TestEmptyLogExportsAHeaderOnly(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	launch(t, s, "led", 2)
	signer, v := keys(t, "k")
	var buf bytes.Buffer
	if err := Export(context.Background(), &buf, s, "led", signer, t0); err != nil {
		t.Fatal(err)
	}
	if buf.String() != `{"log":"repermit consent log","campaign":"led"}`+"\n" {
		t.Errorf("export %q", buf.String())
	}
	if sum, err := Verify(&buf, "x", v, nil); err != nil || sum.Records != 0 {
		t.Errorf("Verify = %+v, %v", sum, err)
	}
}

// legacyLines writes a ledger of the old kind of n records and its trailer.
func legacyLines(n int) []string {
	var out []string
	prev := ""
	for i := range n {
		rec := repermit.LegacyConsentRecord{Seq: int64(i + 1), Campaign: "old", Recipient: int64(i), Answer: repermit.StateConfirmed, At: t0, Prev: prev}
		rec.Hash = rec.ComputeHash()
		b, _ := json.Marshal(rec)
		out = append(out, string(b))
		prev = rec.Hash
	}
	b, _ := json.Marshal(Trailer{Head: prev, Records: int64(n)})
	return append(out, string(b))
}

func TestOldKindLedgerIsNamedAsSuch(t *testing.T) {
	_, v := keys(t, "k")
	_, err := verify(legacyLines(3), v)
	var old *OldKindError
	if !errors.As(err, &old) || old.Err != nil || old.Records != 3 || !strings.Contains(err.Error(), "a ledger of the old kind") || !strings.Contains(err.Error(), "proves nothing against its holder") {
		t.Errorf("intact old ledger: %v", err)
	}
	broken := legacyLines(3)
	broken[1] = strings.Replace(broken[1], `"recipient":1`, `"recipient":2`, 1)
	_, err = verify(broken, v)
	if !errors.As(err, &old) || old.Err == nil || !strings.Contains(err.Error(), "ledger.jsonl:2: hash mismatch") || !strings.Contains(err.Error(), "old kind") {
		t.Errorf("broken old ledger: %v", err)
	}
}

// TestCampaignOfTheOldKindKeepsItsChain: a campaign launched before the
// consent log goes on answering in its hash chain and exports the old kind.
func TestCampaignOfTheOldKindKeepsItsChain(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	launch(t, s, "old", 2)
	// What a campaign launched by the previous release lacks.
	if err := r.Client.HDel(ctx, r.Prefix+":{old}:meta", "lkind").Err(); err != nil {
		t.Fatal(err)
	}
	answer(t, s, "old", 0, repermit.StateConfirmed, "yoga")
	answer(t, s, "old", 1, repermit.StateDeclined)
	var buf bytes.Buffer
	if err := Export(ctx, &buf, s, "old", nil, t0); err != nil {
		t.Fatal(err)
	}
	_, v := keys(t, "k")
	_, err := Verify(&buf, "old.jsonl", v, nil)
	var old *OldKindError
	if !errors.As(err, &old) || old.Err != nil || old.Records != 2 {
		t.Errorf("export of an old campaign: %v", err)
	}
	if _, _, err := s.SyncTree(ctx, "old"); !errors.Is(err, redisstore.ErrLegacyLedger) {
		t.Errorf("SyncTree of an old campaign: %v", err)
	}
}

// TestExportWithAClockBehindTheLastCheckpointHoldsEveryRecord: a host whose
// clock is behind the one that signed the last checkpoint still exports
// every record, under a checkpoint no older than the last (verify-ledger
// refuses checkpoints that go back in time). It exported only up to the
// last stored checkpoint, and said nothing of the rest.
func TestExportWithAClockBehindTheLastCheckpointHoldsEveryRecord(t *testing.T) {
	signer, v := keys(t, "acme-consent")
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	launch(t, s, "skew", 4)
	answer(t, s, "skew", 0, repermit.StateDeclined)
	answer(t, s, "skew", 1, repermit.StateDeclined)
	ahead := t0.Add(2 * time.Hour)
	if _, made, err := Checkpoint(ctx, s, "skew", signer, ahead, 0); err != nil || !made {
		t.Fatalf("checkpoint: made %v, %v", made, err)
	}
	answer(t, s, "skew", 2, repermit.StateDeclined)
	answer(t, s, "skew", 3, repermit.StateDeclined)
	var buf bytes.Buffer
	if err := Export(ctx, &buf, s, "skew", signer, ahead.Add(-time.Minute)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	sum, err := verify(lines, v)
	if err != nil || sum.Records != 4 || sum.Checkpoints != 2 {
		t.Errorf("Verify = %+v, %v; want 4 records under 2 checkpoints:\n%s", sum, err, buf.String())
	}
}
