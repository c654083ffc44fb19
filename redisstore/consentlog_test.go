package redisstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// answerAs records one answer of recipient idx of campaign id at at.
func answerAs(t *testing.T, s *redisstore.Store, id string, idx int64, st repermit.State, at time.Time, topics ...string) redisstore.AnswerResult {
	t.Helper()
	res, err := s.Record(context.Background(), redisstore.Answer{Campaign: id, Index: idx, State: st, Topics: topics, At: at, IP: "192.0.2.1", UserAgent: "test"})
	if err != nil {
		t.Fatalf("answer %s/%d %s: %v", id, idx, st, err)
	}
	if !res.Changed {
		t.Fatalf("answer %s/%d %s changed nothing (state %s)", id, idx, st, res.Recipient.State)
	}
	return res
}

// rawRecords returns campaign id's stored records, as RawLedger hands them.
func rawRecords(t *testing.T, s *redisstore.Store, id string, max int64) (raws [][]byte, ids []string) {
	t.Helper()
	err := s.RawLedger(context.Background(), id, max, func(raw []byte, streamID string) error {
		raws = append(raws, raw)
		ids = append(ids, streamID)
		return nil
	})
	if err != nil {
		t.Fatalf("RawLedger(%s, %d): %v", id, max, err)
	}
	return raws, ids
}

// memTreeHash computes the tree hash of records in memory, without the
// store, as a verifier of an export would.
func memTreeHash(t *testing.T, records [][]byte) tlog.Hash {
	t.Helper()
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, rec := range records {
		hs, err := tlog.StoredHashes(int64(i), rec, r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	th, err := tlog.TreeHash(int64(len(records)), r)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

// TestSyncTreeHashesEveryRecordOnce: the store's tree over the consent
// log has the hash a verifier computes from the records alone, grows with
// new answers without rehashing the old ones, and proves each record and
// each older tree through HashReader.
func TestSyncTreeHashesEveryRecordOnce(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 6)
	mail(t, s, "camp", span(0, 6), t0)
	at := t0.Add(time.Minute)
	answerAs(t, s, "camp", 0, repermit.StateConfirmed, at, "yoga")
	answerAs(t, s, "camp", 1, repermit.StateDeclined, at)
	answerAs(t, s, "camp", 2, repermit.StateConfirmed, at)

	if isLog, err := s.LedgerIsLog(ctx, "camp"); err != nil || !isLog {
		t.Fatalf("LedgerIsLog = %v, %v; want true", isLog, err)
	}
	size, th, err := s.SyncTree(ctx, "camp")
	if err != nil {
		t.Fatal(err)
	}
	raws, _ := rawRecords(t, s, "camp", -1)
	if size != 3 || len(raws) != 3 {
		t.Fatalf("SyncTree size = %d, records %d; want 3", size, len(raws))
	}
	if want := memTreeHash(t, raws); th != want {
		t.Errorf("tree hash %v, a verifier computes %v", th, want)
	}
	if n, err := s.LedgerSize(ctx, "camp"); err != nil || n != 3 {
		t.Errorf("LedgerSize = %d, %v; want 3", n, err)
	}
	// Nothing new: the same tree, nothing appended twice.
	if size2, th2, err := s.SyncTree(ctx, "camp"); err != nil || size2 != size || th2 != th {
		t.Errorf("second SyncTree = %d %v %v; want %d %v", size2, th2, err, size, th)
	}

	answerAs(t, s, "camp", 0, repermit.StateUnsubscribed, at.Add(time.Second))
	answerAs(t, s, "camp", 3, repermit.StateConfirmed, at.Add(time.Second), "events")
	size2, th2, err := s.SyncTree(ctx, "camp")
	if err != nil {
		t.Fatal(err)
	}
	raws, _ = rawRecords(t, s, "camp", -1)
	if size2 != 5 || th2 != memTreeHash(t, raws) {
		t.Fatalf("after two more answers SyncTree = %d %v; want 5 %v", size2, th2, memTreeHash(t, raws))
	}
	hr := s.HashReader(ctx, "camp")
	for i, raw := range raws {
		p, err := tlog.ProveRecord(size2, int64(i), hr)
		if err != nil {
			t.Fatalf("ProveRecord %d: %v", i, err)
		}
		if err := tlog.CheckRecord(p, size2, th2, int64(i), tlog.RecordHash(raw)); err != nil {
			t.Errorf("record %d does not check against the tree: %v", i, err)
		}
	}
	p, err := tlog.ProveTree(size2, size, hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(p, size2, th2, size, th); err != nil {
		t.Errorf("the tree of 5 does not extend the tree of 3: %v", err)
	}
}

// TestConcurrentSyncTreeAgrees: several processes syncing the same
// campaign at once end with one tree, each record hashed in once.
func TestConcurrentSyncTreeAgrees(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	const n = 20
	launch(t, s, "camp", n)
	mail(t, s, "camp", span(0, n), t0)
	for i := int64(0); i < n; i++ {
		answerAs(t, s, "camp", i, repermit.StateConfirmed, t0.Add(time.Minute))
	}
	var wg sync.WaitGroup
	sizes := make([]int64, 4)
	errs := make([]error, 4)
	for i := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A store each: one process each, no shared cache.
			sizes[i], _, errs[i] = redisstore.New(r.Client, r.Prefix).SyncTree(ctx, "camp")
		}()
	}
	wg.Wait()
	for i := range sizes {
		if errs[i] != nil || sizes[i] != n {
			t.Errorf("syncer %d: size %d, %v; want %d", i, sizes[i], errs[i], n)
		}
	}
	raws, _ := rawRecords(t, s, "camp", -1)
	size, th, err := s.SyncTree(ctx, "camp")
	if err != nil || size != n || th != memTreeHash(t, raws) {
		t.Errorf("tree after concurrent syncs = %d %v %v; want %d %v", size, th, err, n, memTreeHash(t, raws))
	}
	// Each record's stored hashes appended once: the tree list holds as
	// many hashes as n records need, no more.
	var treeLen int64
	for _, k := range r.Keys(t) {
		if strings.HasSuffix(k, "}:tree") {
			if treeLen, err = r.Client.LLen(ctx, k).Result(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := tlog.StoredHashCount(n); treeLen != want {
		t.Errorf("tree list holds %d hashes, %d records need %d", treeLen, n, want)
	}
}

// TestLegacyLedgerHasNoTree: a campaign launched before the consent log
// (no ledger kind in its meta) keeps its hash chain; SyncTree refuses it
// and an unknown campaign is ENOTFOUND.
func TestLegacyLedgerHasNoTree(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "old", 2)
	if err := r.Client.HDel(ctx, r.Prefix+":{old}:meta", "lkind").Err(); err != nil {
		t.Fatal(err)
	}
	mail(t, s, "old", span(0, 2), t0)
	answerAs(t, s, "old", 0, repermit.StateConfirmed, t0.Add(time.Minute))

	if isLog, err := s.LedgerIsLog(ctx, "old"); err != nil || isLog {
		t.Errorf("LedgerIsLog(old) = %v, %v; want false", isLog, err)
	}
	if _, _, err := s.SyncTree(ctx, "old"); !errors.Is(err, redisstore.ErrLegacyLedger) {
		t.Errorf("SyncTree(old) = %v; want ErrLegacyLedger", err)
	}
	raws, _ := rawRecords(t, s, "old", -1)
	if len(raws) != 1 || !strings.Contains(string(raws[0]), `"prev":""`) {
		t.Errorf("legacy ledger holds %q; want one hash-chain record", raws)
	}
	if _, err := s.LedgerIsLog(ctx, "nope"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("LedgerIsLog(nope) = %v; want ENOTFOUND", err)
	}
	if _, _, err := s.SyncTree(ctx, "nope"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("SyncTree(nope) = %v; want ENOTFOUND", err)
	}
}

// TestCheckpointsGrowAndKeepTheirGap: a checkpoint is kept only when it
// covers more records than the last and comes at least the gap after it.
func TestCheckpointsGrowAndKeepTheirGap(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 1)
	const gap = time.Hour
	steps := []struct {
		name string
		size int64
		at   time.Time
		kept bool
	}{
		{"first", 2, t0, true},
		{"same size later", 2, t0.Add(2 * gap), false},
		{"smaller", 1, t0.Add(2 * gap), false},
		{"larger within the gap", 3, t0.Add(gap - time.Second), false},
		{"larger after the gap", 3, t0.Add(gap), true},
		{"larger again at once", 4, t0.Add(gap + time.Minute), false},
		{"larger after another gap", 9, t0.Add(3 * gap), true},
	}
	var want []string
	for _, st := range steps {
		note := fmt.Sprintf("checkpoint %d at %d", st.size, st.at.Unix())
		kept, err := s.AddCheckpoint(ctx, "camp", st.size, st.at, gap, note)
		if err != nil || kept != st.kept {
			t.Errorf("%s: AddCheckpoint = %v, %v; want %v", st.name, kept, err, st.kept)
		}
		if st.kept {
			want = append(want, note)
		}
	}
	cps, err := s.Checkpoints(ctx, "camp")
	if err != nil || strings.Join(cps, "|") != strings.Join(want, "|") {
		t.Errorf("Checkpoints = %q, %v; want %q", cps, err, want)
	}
	if cps, err := s.Checkpoints(ctx, "other"); err != nil || len(cps) != 0 {
		t.Errorf("Checkpoints of a campaign without any = %q, %v", cps, err)
	}
}

// TestLedgerReadersPageThroughTheWholeLog: RawLedger, LedgerAfter and
// Ledger read past their page of 1000 records without losing or repeating
// one, and stop at max.
func TestLedgerReadersPageThroughTheWholeLog(t *testing.T) {
	if testing.Short() {
		t.Skip("answers 1001 recipients")
	}
	s, _ := newStore(t)
	ctx := context.Background()
	const n = 1001
	launch(t, s, "camp", n)
	mail(t, s, "camp", span(0, n), t0)
	for i := int64(0); i < n; i++ {
		answerAs(t, s, "camp", i, repermit.StateConfirmed, t0.Add(time.Minute))
	}
	raws, ids := rawRecords(t, s, "camp", -1)
	if len(raws) != n {
		t.Fatalf("RawLedger read %d records, want %d", len(raws), n)
	}
	for i, raw := range raws {
		rec, err := repermit.ParseRecord(raw)
		if err != nil || rec.Seq != int64(i+1) || rec.Recipient != int64(i) {
			t.Fatalf("record %d = %+v, %v", i, rec, err)
		}
	}
	var seq int64
	err := s.Ledger(ctx, "camp", func(r repermit.ConsentRecord, id string) error {
		if seq++; r.Seq != seq || id != ids[seq-1] {
			return fmt.Errorf("Ledger record %d is seq %d at %s", seq, r.Seq, id)
		}
		return nil
	})
	if err != nil || seq != n {
		t.Errorf("Ledger read %d records: %v", seq, err)
	}

	cases := []struct {
		name  string
		after string
		max   int64
		want  []string
	}{
		{"from the start, two", "", 2, ids[:2]},
		{"from the start, none", "", 0, nil},
		{"after the second, all", ids[1], -1, ids[2:]},
		{"after the 999th, across the page end", ids[998], 3, ids[999:]},
		{"after the last", ids[n-1], -1, nil},
	}
	for _, c := range cases {
		var got []string
		err := s.LedgerAfter(ctx, "camp", c.after, c.max, func(_ []byte, id string) error {
			got = append(got, id)
			return nil
		})
		if err != nil || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: LedgerAfter = %d ids, %v; want %d", c.name, len(got), err, len(c.want))
		}
	}
	if got, _ := rawRecords(t, s, "camp", 1000); len(got) != 1000 {
		t.Errorf("RawLedger with max 1000 read %d", len(got))
	}
	stop := errors.New("stop")
	if err := s.RawLedger(ctx, "camp", -1, func([]byte, string) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("RawLedger does not hand back fn's error: %v", err)
	}
}

// TestRecordsOfFindsOnePersonsRecords: the records of one subject (the
// keyed hash of an address) and no one else's, with the wording each
// answer was given kept once under its hash.
func TestRecordsOfFindsOnePersonsRecords(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 3)
	mail(t, s, "camp", span(0, 3), t0)
	page := []byte("Do you want to keep hearing from us?")
	sum := sha256.Sum256(page)
	wording := hex.EncodeToString(sum[:])
	answer := func(idx int64, st repermit.State) {
		t.Helper()
		_, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: idx, State: st, At: t0.Add(time.Minute), WordingSHA256: wording, Wording: page})
		if err != nil {
			t.Fatal(err)
		}
	}
	answer(0, repermit.StateConfirmed)
	answer(1, repermit.StateConfirmed)
	answer(0, repermit.StateDeclined)

	key, err := s.SubjectKey(ctx)
	if err != nil || len(key) != 32 {
		t.Fatalf("SubjectKey = %x, %v", key, err)
	}
	// Another process of the same deployment reads the same key.
	again, err := redisstore.New(r.Client, r.Prefix).SubjectKey(ctx)
	if err != nil || string(again) != string(key) {
		t.Errorf("a second store's SubjectKey = %x, %v; want %x", again, err, key)
	}
	other, err := redisstore.New(r.Client, r.Prefix+":other").SubjectKey(ctx)
	if err != nil || string(other) == string(key) {
		t.Errorf("another deployment's SubjectKey = %x, %v; want a key of its own", other, err)
	}

	subject := func(email string) string { sub, _ := consentlog.Subject(key, email); return sub }
	cases := []struct {
		email   string
		answers []repermit.State
	}{
		{"a0@example.com", []repermit.State{repermit.StateConfirmed, repermit.StateDeclined}},
		{"a1@example.com", []repermit.State{repermit.StateConfirmed}},
		{"a2@example.com", nil},
	}
	for _, c := range cases {
		raws, err := s.RecordsOf(ctx, "camp", subject(c.email))
		if err != nil {
			t.Fatal(err)
		}
		var got []repermit.State
		for _, raw := range raws {
			rec, err := repermit.ParseRecord(raw)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, rec.Answer)
			if rec.Wording != wording {
				t.Errorf("%s: record names wording %q, want %q", c.email, rec.Wording, wording)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.answers) {
			t.Errorf("RecordsOf(%s) = %v; want %v", c.email, got, c.answers)
		}
	}

	if text, ok, err := s.Wording(ctx, "camp", wording); err != nil || !ok || text != string(page) {
		t.Errorf("Wording = %q %v %v; want the page", text, ok, err)
	}
	if _, ok, err := s.Wording(ctx, "camp", strings.Repeat("0", 64)); err != nil || ok {
		t.Errorf("Wording of an unknown hash: ok %v, %v", ok, err)
	}
	// The wording outlives the recipients' records.
	if err := s.SetStatus(ctx, "camp", repermit.StatusFinished, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeRecipients(ctx, "camp"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Wording(ctx, "camp", wording); err != nil || !ok {
		t.Errorf("Wording after purge: ok %v, %v", ok, err)
	}
}

// TestDeploymentIDIsMadeOnceAndKept: every process of a deployment reads
// the same id; another prefix is another deployment.
func TestDeploymentIDIsMadeOnceAndKept(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	id, err := s.Deployment(ctx)
	if err != nil || len(id) != 32 {
		t.Fatalf("Deployment = %q, %v; want 32 hex digits", id, err)
	}
	if again, err := redisstore.New(r.Client, r.Prefix).Deployment(ctx); err != nil || again != id {
		t.Errorf("a second store's Deployment = %q, %v; want %q", again, err, id)
	}
	if other, err := s.WithPrefix(r.Prefix + ":other").Deployment(ctx); err != nil || other == id {
		t.Errorf("another prefix's Deployment = %q, %v; want an id of its own", other, err)
	}
}

// TestWitnessAndWebhookPositions: what the checkpoint and webhook workers
// note between runs reads back, and status sees the webhooks' backlog.
func TestWitnessAndWebhookPositions(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 4)
	mail(t, s, "camp", span(0, 4), t0)
	for i := int64(0); i < 4; i++ {
		answerAs(t, s, "camp", i, repermit.StateConfirmed, t0.Add(time.Minute))
	}
	_, ids := rawRecords(t, s, "camp", -1)

	if n, err := s.Witnessed(ctx, "camp"); err != nil || n != 0 {
		t.Errorf("Witnessed before any = %d, %v", n, err)
	}
	if err := s.SetWitnessed(ctx, "camp", 3); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Witnessed(ctx, "camp"); err != nil || n != 3 {
		t.Errorf("Witnessed = %d, %v; want 3", n, err)
	}

	if w, err := s.Webhook(ctx, "camp", 0); err != nil || w != (redisstore.WebhookState{}) {
		t.Errorf("Webhook before any delivery = %+v, %v", w, err)
	}
	if err := s.WebhookFailed(ctx, "camp", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.WebhookFailed(ctx, "camp", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.WebhookDelivered(ctx, "camp", 0, redisstore.WebhookState{Position: ids[2], Delivered: 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.WebhookFailed(ctx, "camp", 1); err != nil {
		t.Fatal(err)
	}
	want := map[int]redisstore.WebhookState{
		0: {Position: ids[2], Delivered: 3, Failures: 2},
		1: {Failures: 1},
		2: {},
	}
	st, err := s.Stats(ctx, "camp")
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if got, err := s.Webhook(ctx, "camp", i); err != nil || got != w {
			t.Errorf("Webhook %d = %+v, %v; want %+v", i, got, err, w)
		}
		if got := st.Webhooks[i]; got.Delivered != w.Delivered || got.Failures != w.Failures {
			t.Errorf("Stats.Webhooks[%d] = %+v; want %+v", i, got, w)
		}
		if got := st.WebhookBacklog(i); got != 4-w.Delivered {
			t.Errorf("WebhookBacklog(%d) = %d; want %d", i, got, 4-w.Delivered)
		}
	}
	if _, ok := st.Webhooks[2]; ok {
		t.Error("Stats lists a webhook that never ran")
	}
}

// TestWithdrawalAfterThePurgeKeepsItsSubject: once retention purged the
// recipients, a confirmed recipient who withdraws or changes topics is
// known by the address hash only; the record of that answer still names
// their subject, so that the proof of what they answered (RecordsOf,
// ledgerio.Proof) includes it.
func TestWithdrawalAfterThePurgeKeepsItsSubject(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 3)
	mail(t, s, "camp", span(0, 3), t0)
	answerAs(t, s, "camp", 1, repermit.StateConfirmed, t0.Add(time.Minute), "yoga")
	answerAs(t, s, "camp", 2, repermit.StateConfirmed, t0.Add(time.Minute))
	mustDo(t, s.SetStatus(ctx, "camp", repermit.StatusFinished, repermit.StatusRunning))
	mustDo(t, s.PurgeRecipients(ctx, "camp"))
	later := t0.Add(400 * 24 * time.Hour)
	answerAs(t, s, "camp", 1, repermit.StateConfirmed, later, "events")
	answerAs(t, s, "camp", 1, repermit.StateUnsubscribed, later.Add(time.Minute))
	// A caller that read the recipient itself (the web page does) hands
	// it over as Current.
	r2, err := s.Recipient(ctx, "camp", 2)
	mustDo(t, err)
	if _, err := s.Record(ctx, redisstore.Answer{Campaign: "camp", Index: 2, State: repermit.StateDeclined, At: later, Current: r2}); err != nil {
		t.Fatal(err)
	}

	key, err := s.SubjectKey(ctx)
	mustDo(t, err)
	cases := []struct {
		email   string
		answers []repermit.State
	}{
		{"a1@example.com", []repermit.State{repermit.StateConfirmed, repermit.StateConfirmed, repermit.StateUnsubscribed}},
		{"a2@example.com", []repermit.State{repermit.StateConfirmed, repermit.StateDeclined}},
	}
	for _, c := range cases {
		sub, _ := consentlog.Subject(key, c.email)
		raws, err := s.RecordsOf(ctx, "camp", sub)
		mustDo(t, err)
		var got []repermit.State
		for _, raw := range raws {
			rec, err := repermit.ParseRecord(raw)
			mustDo(t, err)
			got = append(got, rec.Answer)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.answers) {
			t.Errorf("RecordsOf(%s) after the purge = %v; want %v", c.email, got, c.answers)
		}
	}
	raws, _ := rawRecords(t, s, "camp", -1)
	for _, raw := range raws {
		if strings.Contains(string(raw), `"subject":""`) {
			t.Errorf("a record without its subject: %s", raw)
		}
	}
}
