package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redistest"
)

// TestScriptAgreesWithTheTable runs every (stage, event) pair of
// repermit's state table, at every mail step and lease that matter,
// before and after the deadline, through repermit.Apply and through the
// transition script on Redis, and compares the verdict, the new code, the
// per-state counts the script keeps and whether it erased the address.
func TestScriptAgreesWithTheTable(t *testing.T) {
	s, id, deadline := stateTableStore(t)
	if bad := compareWithScript(t, s, id, deadline, repermit.Transitions(), nil); len(bad) > 0 {
		t.Errorf("%d of the script's answers differ from the table's:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// TestScriptComparisonCatchesAMismatch: a script generated from a table
// that differs in one row (the lease rule that keeps an initial mail in
// flight from expiring as unreached) disagrees with repermit.Apply, and
// the comparison says where.
func TestScriptComparisonCatchesAMismatch(t *testing.T) {
	s, id, deadline := stateTableStore(t)
	tampered := repermit.Transitions()
	found := false
	for i, tr := range tampered {
		if tr.From == "claimed-initial" && tr.On == repermit.EventExpire {
			tampered[i].Lease = repermit.AnyLease
			found = true
		}
	}
	if !found {
		t.Fatal("the table has no row for claimed-initial on expire")
	}
	s.transitionScript = newTransitionScript(repermit.Stages(), tampered)
	bad := compareWithScript(t, s, id, deadline, repermit.Transitions(), []repermit.Event{repermit.EventExpire})
	if len(bad) == 0 {
		t.Fatal("a script from a tampered table agreed with repermit.Apply")
	}
	if !strings.Contains(bad[0], "q1:") || !strings.Contains(bad[0], "busy") {
		t.Errorf("first mismatch %q does not name the live initial claim", bad[0])
	}
}

// stateTableStore launches a campaign of one recipient and returns its
// deadline.
func stateTableStore(t *testing.T) (*Store, string, time.Time) {
	t.Helper()
	r := redistest.New(t)
	s := New(r.Client, r.Prefix)
	ctx := context.Background()
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	c := repermit.Campaign{ID: "camp", From: "news@acme.example", Subject: "s", StartAt: start, Deadline: start.Add(24 * time.Hour)}
	imp, err := s.BeginImport(ctx, c, start)
	if err != nil {
		t.Fatal(err)
	}
	if err := imp.Add(ctx, "a@example.com", "A", "en", nil); err != nil {
		t.Fatal(err)
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: c.ID, Imported: 1}); err != nil {
		t.Fatal(err)
	}
	return s, c.ID, c.Deadline
}

// compareWithScript sets recipient 0 to each sample code, applies each
// event of only (all when nil) through the script and through
// repermit.Apply, and returns a line for every difference.
func compareWithScript(t *testing.T, s *Store, id string, deadline time.Time, table []repermit.Transition, only []repermit.Event) []string {
	t.Helper()
	ctx := context.Background()
	bucket, meta := s.home(id).bucket(0), s.metaKey(id)
	var bad []string
	covered := map[string]bool{}
	for _, late := range []bool{false, true} {
		now := deadline.Add(-time.Hour)
		if late {
			now = deadline.Add(time.Hour)
		}
		leaseUntil := now.Add(2 * time.Minute)
		for _, code := range sampleCodes(table, now) {
			st, _, _, ok := repermit.ParseCode(code)
			if !ok {
				t.Fatalf("sample code %q has no stage", code)
			}
			covered[st.Name] = true
			for _, e := range repermit.Events() {
				if only != nil && !slices.Contains(only, e) {
					continue
				}
				steps := []int{0}
				if e == repermit.EventClaim || e == repermit.EventSent || e == repermit.EventRelease || e == repermit.EventRenew {
					steps = []int{1, 2, 3}
				}
				for _, step := range steps {
					c := repermit.Change{Event: e, Step: step, Now: now, Late: late}
					if e == repermit.EventClaim || e == repermit.EventRenew {
						c.LeaseUntil = leaseUntil
					}
					what := fmt.Sprintf("%s (%s) on %s step %d late %t", code, st.Name, e, step, late)
					wantCode, wantVerdict := repermit.Apply(code, c)

					if err := s.rdb.HSet(ctx, bucket, "s0", code, "d0", "row").Err(); err != nil {
						t.Fatal(err)
					}
					before := counts(t, s, meta)
					out, err := s.transition(ctx, id, 0, e, now, transitionArgs{step: step, leaseUntil: c.LeaseUntil}, []slotChange{{slot: "0"}})
					if e == repermit.EventClaim && late {
						// Past the deadline the campaign takes no claim at
						// all: a guard of the campaign, not of the table.
						if !errors.Is(err, ErrNotRunning) {
							bad = append(bad, fmt.Sprintf("%s: script said %v, %v; want the campaign's ErrNotRunning", what, out, err))
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					got := repermit.Refused
					switch {
					case out[0].applied:
						got = repermit.Applied
					case out[0].busy:
						got = repermit.Busy
					}
					gotCode, err := s.rdb.HGet(ctx, bucket, "s0").Result()
					if err != nil {
						t.Fatal(err)
					}
					if got != wantVerdict || gotCode != wantCode {
						bad = append(bad, fmt.Sprintf("%s: script %s -> %q, table %s -> %q", what, got, gotCode, wantVerdict, wantCode))
						continue
					}
					// The script counts the states users see and erases the
					// address on entering an erasing stage, as the table says.
					after := counts(t, s, meta)
					from, _ := repermit.StateOf(code)
					to, _ := repermit.StateOf(wantCode)
					for _, state := range repermit.States() {
						want := int64(0)
						if from != to && state == from {
							want = -1
						}
						if from != to && state == to {
							want = 1
						}
						if d := after[state] - before[state]; d != want {
							bad = append(bad, fmt.Sprintf("%s: count of %s moved by %d, want %d", what, state, d, want))
						}
					}
					newStage, _, _, _ := repermit.ParseCode(wantCode)
					erased := !s.rdb.HExists(ctx, bucket, "d0").Val()
					if wantErased := got == repermit.Applied && newStage.Erases; erased != wantErased {
						bad = append(bad, fmt.Sprintf("%s: address erased %t, want %t", what, erased, wantErased))
					}
				}
			}
		}
	}
	for _, st := range repermit.Stages() {
		if !covered[st.Name] {
			t.Errorf("no sample code of stage %s", st.Name)
		}
	}
	return bad
}

// sampleCodes are the codes the table can write (its targets at mail steps
// 1 to 3, with a live lease, one that ends now, a lapsed and a released
// one) and the import's "p".
func sampleCodes(table []repermit.Transition, now time.Time) []string {
	leases := []string{ms(now.Add(time.Minute)), ms(now), ms(now.Add(-time.Minute)), "0"}
	seen := map[string]bool{"p": true}
	out := []string{"p"}
	for _, tr := range table {
		for step := 1; step <= 3; step++ {
			for _, lease := range leases {
				code := strings.NewReplacer("{step}", strconv.Itoa(step), "{lease}", lease).Replace(tr.To)
				if !seen[code] {
					seen[code] = true
					out = append(out, code)
				}
			}
		}
	}
	return out
}

func counts(t *testing.T, s *Store, meta string) map[repermit.State]int64 {
	t.Helper()
	m, err := s.rdb.HGetAll(context.Background(), meta).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[repermit.State]int64{}
	for _, state := range repermit.States() {
		out[state], _ = strconv.ParseInt(m[fCountPfx+string(state)], 10, 64)
	}
	return out
}
