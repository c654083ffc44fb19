package ledgerio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// exported launches a campaign of n recipients, answers each (confirm,
// decline, unsubscribe in turn) and returns the export's lines.
func exported(t *testing.T, n int) []string {
	t.Helper()
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	c := repermit.Campaign{ID: "led", From: "a@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour), Topics: []string{"yoga", "events"}}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		imp.Add(ctx, fmt.Sprintf("r%d@example.com", i), "", "en", nil)
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Imported: int64(n)}); err != nil {
		t.Fatal(err)
	}
	states := []repermit.State{repermit.StateConfirmed, repermit.StateDeclined, repermit.StateUnsubscribed}
	for i := range n {
		a := redisstore.Answer{Campaign: "led", Index: int64(i), State: states[i%3], At: t0.Add(time.Duration(i) * time.Second), IP: "192.0.2.0", UserAgent: "ua", WordingSHA256: "ab"}
		if a.State == repermit.StateConfirmed {
			a.Topics = []string{"yoga"}
		}
		if _, err := s.Record(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := Export(ctx, &buf, s, "led"); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

func verify(lines []string) (int, error) {
	return Verify(strings.NewReader(strings.Join(lines, "\n")+"\n"), "ledger.jsonl")
}

func TestExportVerifies(t *testing.T) {
	lines := exported(t, 7)
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 7 records and a trailer", len(lines))
	}
	var tr Trailer
	if err := json.Unmarshal([]byte(lines[7]), &tr); err != nil || tr.Records != 7 || len(tr.Head) != 64 {
		t.Errorf("trailer %q: %+v %v", lines[7], tr, err)
	}
	if n, err := verify(lines); err != nil || n != 7 {
		t.Errorf("Verify = %d, %v; want 7 records, no error", n, err)
	}
}

func TestEditedLedgerFailsNamingTheLine(t *testing.T) {
	lines := exported(t, 7)
	edit := func(i int, f func(*repermit.ConsentRecord)) []string {
		out := append([]string(nil), lines...)
		var rec repermit.ConsentRecord
		if err := json.Unmarshal([]byte(out[i]), &rec); err != nil {
			t.Fatal(err)
		}
		f(&rec)
		b, _ := json.Marshal(rec)
		out[i] = string(b)
		return out
	}
	without := func(i int) []string {
		return append(append([]string(nil), lines[:i]...), lines[i+1:]...)
	}
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"edited answer", edit(6, func(r *repermit.ConsentRecord) { r.Answer = repermit.StateDeclined }), "ledger.jsonl:7: hash mismatch (edited record)"},
		{"edited ip", edit(1, func(r *repermit.ConsentRecord) { r.IP = "203.0.113.9" }), "ledger.jsonl:2: hash mismatch"},
		{"removed record", without(3), "ledger.jsonl:4: sequence 5, want 4"},
		{"swapped records", func() []string {
			out := append([]string(nil), lines...)
			out[2], out[3] = out[3], out[2]
			return out
		}(), "ledger.jsonl:3: sequence 4, want 3"},
		{"removed last record", without(6), "ledger.jsonl:7: trailer says 7 records"},
		{"no trailer", lines[:7], "no trailer line"},
		{"cut after a record", lines[:4], "no trailer line"},
		{"extra field", func() []string {
			out := append([]string(nil), lines...)
			out[0] = strings.Replace(out[0], `{"seq":1,`, `{"seq":1,"note":"x",`, 1)
			return out
		}(), `ledger.jsonl:1: not a consent record: json: unknown field "note"`},
		{"garbage", append(append([]string(nil), lines[:2]...), append([]string{"{"}, lines[2:]...)...), "ledger.jsonl:3: not a consent record"},
		{"line after trailer", append(append([]string(nil), lines...), lines[0]), "ledger.jsonl:9: line after the trailer"},
	} {
		_, err := verify(tc.lines)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
			continue
		}
		if repermit.ErrorCode(err) != repermit.EINVALID {
			t.Errorf("%s: code %s, want EINVALID", tc.name, repermit.ErrorCode(err))
		}
	}
}

// TestVerifyAgreesWithVerifyLedger holds the streaming check to the
// domain's: for every single-record edit both accept or both refuse.
func TestVerifyAgreesWithVerifyLedger(t *testing.T) {
	lines := exported(t, 5)
	records := lines[:5]
	trailer := lines[5]
	mutations := []func(*repermit.ConsentRecord){
		func(r *repermit.ConsentRecord) {},
		func(r *repermit.ConsentRecord) { r.Seq++ },
		func(r *repermit.ConsentRecord) { r.Prev = "" },
		func(r *repermit.ConsentRecord) { r.Topics = nil },
		func(r *repermit.ConsentRecord) { r.At = r.At.Add(time.Millisecond) },
		func(r *repermit.ConsentRecord) { r.Hash = r.ComputeHash() }, // no-op on an intact record
		func(r *repermit.ConsentRecord) { r.UserAgent = "x"; r.Hash = r.ComputeHash() },
	}
	for i := range records {
		for k, m := range mutations {
			recs := make([]repermit.ConsentRecord, len(records))
			for j, l := range records {
				json.Unmarshal([]byte(l), &recs[j])
			}
			m(&recs[i])
			out := make([]string, 0, len(recs)+1)
			for _, r := range recs {
				b, _ := json.Marshal(r)
				out = append(out, string(b))
			}
			out = append(out, trailer)
			_, errStream := verify(out)
			errDomain := repermit.VerifyLedger(recs)
			// The trailer may refuse what the chain accepts (a rehashed
			// last record), never the other way round.
			if errDomain != nil && errStream == nil {
				t.Errorf("record %d mutation %d: VerifyLedger refuses (%v), Verify accepts", i+1, k, errDomain)
			}
			if errDomain == nil && errStream != nil && !strings.Contains(errStream.Error(), "trailer") {
				t.Errorf("record %d mutation %d: Verify refuses (%v), VerifyLedger accepts", i+1, k, errStream)
			}
		}
	}
}

func TestExportOfUnknownCampaignIsNotFound(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	var buf bytes.Buffer
	err := Export(context.Background(), &buf, s, "nope")
	if repermit.ErrorCode(err) != repermit.ENOTFOUND || buf.Len() != 0 {
		t.Errorf("Export of unknown campaign: %v, wrote %q", err, buf.String())
	}
}

func TestEmptyLedgerExportsATrailerOnly(t *testing.T) {
	lines := exported(t, 0)
	if len(lines) != 1 || lines[0] != `{"head":"","records":0}` {
		t.Errorf("lines %q", lines)
	}
	if n, err := verify(lines); n != 0 || err != nil {
		t.Errorf("Verify = %d, %v", n, err)
	}
}
