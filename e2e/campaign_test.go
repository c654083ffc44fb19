package e2e

import (
	"context"
	"encoding/csv"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/demo"
	"github.com/repermit/repermit/redistest"
)

// mailbox reads every message in Mailpit the way a mail client would and
// returns the links of each, by recipient and then in arrival order. It
// checks each message against Mailpit's own parse of it.
func mailbox(t *testing.T, mp *mailpit) map[string][]demo.Links {
	t.Helper()
	byRcpt := make(map[string][]demo.Links)
	msgs := mp.Messages()
	slices.Reverse(msgs) // Mailpit lists newest first
	for _, s := range msgs {
		l, err := demo.ParseLinks(mp.Raw(s.ID))
		if err != nil {
			t.Fatalf("message %s to %v: %v", s.ID, s.To, err)
		}
		m := mp.Message(s.ID)
		if m.ListUnsubscribe.Errors != "" {
			t.Errorf("message %s: Mailpit finds List-Unsubscribe faulty: %s", s.ID, m.ListUnsubscribe.Errors)
		}
		if m.ListUnsubscribe.HeaderPost != "List-Unsubscribe=One-Click" || !l.OneClick {
			t.Errorf("message %s: List-Unsubscribe-Post %q, want RFC 8058 one-click", s.ID, m.ListUnsubscribe.HeaderPost)
		}
		if !slices.Contains(m.ListUnsubscribe.Links, l.Unsubscribe) {
			t.Errorf("message %s: Mailpit sees unsubscribe links %v, we parsed %q", s.ID, m.ListUnsubscribe.Links, l.Unsubscribe)
		}
		if !strings.Contains(m.Text, l.Yes) || !strings.Contains(m.Text, l.No) {
			t.Errorf("message %s: Mailpit's text part lacks the links we parsed (%q, %q)", s.ID, l.Yes, l.No)
		}
		if m.HTML == "" {
			t.Errorf("message %s: no HTML part (want multipart/alternative)", s.ID)
		}
		h := mp.Headers(s.ID)
		if len(h["Message-Id"]) == 0 {
			t.Errorf("message %s: no Message-ID header", s.ID)
		}
		byRcpt[l.To] = append(byRcpt[l.To], l)
	}
	return byRcpt
}

// TestCampaignEndToEnd runs a campaign through separate worker and web
// processes on a real Redis into Mailpit, and answers it by following the
// links of the real messages with a real HTTP client.
func TestCampaignEndToEnd(t *testing.T) {
	needReal(t)
	t.Parallel()
	r := redistest.New(t)
	mp := startMailpit(t)
	w := newWorld(t, r.URL, r.Prefix, mp.SMTPURL())
	w.startWeb()
	w.start("worker", "worker")

	const id = "e2e-flow"
	const n = 12
	path := w.writeCampaign(campaignSpec{
		ID: id, N: n, Deadline: "30s", Reminders: []string{"12s"},
		Topics:      []string{"news", "events"},
		Suppression: []string{addr(n-1, 0)},
	})
	start := time.Now()
	rep := w.launch(path)
	if rep.Imported != n-1 || rep.SkippedSuppressed != 1 {
		t.Fatalf("launch: %+v, want %d imported and 1 suppressed", rep, n-1)
	}
	mp.WaitCount(n-1, 30*time.Second)
	box := mailbox(t, mp)
	if _, ok := box[addr(n-1, 0)]; ok {
		t.Errorf("the address on the suppression file was mailed")
	}
	for i := 0; i < n-1; i++ {
		if got := len(box[addr(i, 0)]); got != 1 {
			t.Fatalf("%s has %d mails before the reminder, want 1", addr(i, 0), got)
		}
	}
	first := func(i int) demo.Links { return box[addr(i, 0)][0] }

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := demo.NewBrowser()
	mustOK := func(what string, p demo.Page, err error) {
		t.Helper()
		if err != nil || p.Status != http.StatusOK {
			t.Fatalf("%s: status %d, %v\n%s", what, p.Status, err, p.Body)
		}
	}
	// 0: yes, one topic; 1: yes, all topics, twice; 2: no; 3: one-click
	// unsubscribe; 4: yes, then one-click unsubscribe; 5: only opens the
	// page; 6: answers the reminder; the rest stay silent.
	p, err := b.Answer(ctx, first(0).Yes, "confirm", []string{"news"})
	mustOK("confirm 0", p, err)
	p, err = b.Answer(ctx, first(1).Yes, "confirm", []string{"news", "events"})
	mustOK("confirm 1", p, err)
	p, err = b.Answer(ctx, first(1).Yes, "confirm", []string{"news", "events"})
	mustOK("confirm 1 again", p, err)
	p, err = b.Answer(ctx, first(2).No, "decline", nil)
	mustOK("decline 2", p, err)
	p, err = b.Unsubscribe(ctx, first(3).Unsubscribe)
	mustOK("unsubscribe 3", p, err)
	p, err = b.Answer(ctx, first(4).Confirm, "confirm", nil)
	mustOK("confirm 4", p, err)
	p, err = b.Unsubscribe(ctx, first(4).Unsubscribe)
	mustOK("unsubscribe 4", p, err)
	p, err = b.Get(ctx, first(5).Confirm)
	mustOK("open 5", p, err)
	p, err = b.Get(ctx, first(5).Unsubscribe)
	mustOK("open unsubscribe page 5", p, err)

	forged := first(0).Confirm[:strings.LastIndex(first(0).Confirm, "/")+1] + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	if p, err := b.Get(ctx, forged); err != nil || p.Status != http.StatusNotFound {
		t.Errorf("forged token: status %d, %v; want 404", p.Status, err)
	}

	st := w.status(id)
	t.Logf("after the answers: %s", st)
	want := map[repermit.State]int64{
		repermit.StateConfirmed: 2, repermit.StateDeclined: 1, repermit.StateUnsubscribed: 2, repermit.StateSent: 6,
	}
	for s, v := range want {
		if st.Counts[s] != v {
			t.Errorf("after the answers: %s = %d, want %d (%s)", s, st.Counts[s], v, st)
		}
	}

	// The reminder goes to the six who have not answered (5 to 10).
	mp.WaitCount(n-1+6, 40*time.Second)
	box = mailbox(t, mp)
	for i := 0; i < n-1; i++ {
		wantMails := 1
		if i >= 5 {
			wantMails = 2
		}
		if got := len(box[addr(i, 0)]); got != wantMails {
			t.Errorf("%s: %d mails, want %d", addr(i, 0), got, wantMails)
		}
	}
	rem := box[addr(6, 0)][1]
	if !rem.Reminder() {
		t.Errorf("second mail to %s has Message-ID %q, want a reminder", addr(6, 0), rem.MessageID)
	}
	p, err = b.Answer(ctx, rem.Yes, "confirm", []string{"events"})
	mustOK("confirm 6 from the reminder", p, err)

	// The deadline expires the rest.
	final := w.waitStatus(id, time.Until(start.Add(30*time.Second))+30*time.Second, "the campaign finished", func(s status) bool {
		return s.State == repermit.StatusFinished && s.Counts[repermit.StateSent] == 0
	})
	t.Logf("final: %s", final)
	want = map[repermit.State]int64{
		repermit.StateConfirmed: 3, repermit.StateDeclined: 1, repermit.StateUnsubscribed: 2,
		repermit.StateExpired: 5, repermit.StatePending: 0, repermit.StateSent: 0, repermit.StateBounced: 0,
	}
	for s, v := range want {
		if final.Counts[s] != v {
			t.Errorf("final: %s = %d, want %d", s, final.Counts[s], v)
		}
	}
	if final.total() != rep.Imported {
		t.Errorf("final counts add up to %d, imported %d", final.total(), rep.Imported)
	}
	if p, err := b.Get(ctx, first(7).Confirm); err != nil || p.Status != http.StatusGone {
		t.Errorf("link after the deadline: status %d, %v; want 410", p.Status, err)
	}

	// Exports.
	rows := readCSV(t, w.run("export", id, "--what", "confirmed"))
	if len(rows) < 1 || rows[0][0] != "email" {
		t.Fatalf("confirmed export has no header: %v", rows)
	}
	confirmed := map[string]string{}
	for _, row := range rows[1:] {
		confirmed[row[0]] = row[4]
	}
	wantConfirmed := map[string]string{addr(0, 0): "news", addr(1, 0): "news;events", addr(6, 0): "events"}
	if len(confirmed) != len(wantConfirmed) {
		t.Errorf("confirmed export: %v, want %v", confirmed, wantConfirmed)
	}
	for a, topics := range wantConfirmed {
		got, ok := confirmed[a]
		if !ok {
			t.Errorf("confirmed export lacks %s", a)
			continue
		}
		if !sameSet(strings.Split(got, ";"), strings.Split(topics, ";")) {
			t.Errorf("confirmed export: %s has topics %q, want %q", a, got, topics)
		}
	}

	rows = readCSV(t, w.run("export", id, "--what", "suppressed"))
	reasons := map[string]string{}
	for _, row := range rows[1:] {
		reasons[row[0]] = row[1]
	}
	wantReasons := map[int]string{2: "declined", 3: "unsubscribed", 4: "unsubscribed", 5: "expired", 7: "expired", 8: "expired", 9: "expired", 10: "expired"}
	for i, reason := range wantReasons {
		if got := reasons[repermit.AddressHash(addr(i, 0))]; got != reason {
			t.Errorf("suppressed export: %s reason %q, want %q", addr(i, 0), got, reason)
		}
	}
	for _, i := range []int{0, 1, 6} {
		if _, ok := reasons[repermit.AddressHash(addr(i, 0))]; ok {
			t.Errorf("suppressed export lists the confirmed %s", addr(i, 0))
		}
	}

	ledger := w.run("export", id, "--what", "ledger")
	lines := strings.Split(strings.TrimSpace(ledger), "\n")
	var records []string
	for _, l := range lines {
		if strings.Contains(l, `"seq"`) {
			records = append(records, l)
		}
	}
	// confirm 0, confirm 1 (the replay writes nothing), decline 2,
	// unsubscribe 3, confirm 4, unsubscribe 4, confirm 6; between the
	// header and the last line, a checkpoint of all of them, the workers'
	// checkpoints of fewer.
	if len(records) != 7 || !strings.HasPrefix(lines[0], `{"log":"repermit consent log"`) || !strings.HasPrefix(lines[len(lines)-1], `{"checkpoint":`) {
		t.Errorf("ledger export has %d records in %d lines, want a header, 7 and a checkpoint last:\n%s", len(records), len(lines), ledger)
	}
	for _, r := range records {
		if strings.Contains(r, "@") {
			t.Errorf("the consent log holds an address: %s", r)
		}
	}
	lpath := filepath.Join(w.dir, "ledger.jsonl")
	if err := os.WriteFile(lpath, []byte(ledger), 0o644); err != nil {
		t.Fatal(err)
	}
	out := w.run("verify-ledger", lpath)
	t.Logf("verify-ledger: %s", strings.TrimSpace(out))
	if len(lines) > 2 {
		tampered := strings.Join(append([]string{lines[1], lines[0]}, lines[2:]...), "\n") + "\n"
		tpath := filepath.Join(w.dir, "tampered.jsonl")
		if err := os.WriteFile(tpath, []byte(tampered), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, code, stderr := w.runCode("verify-ledger", tpath); code != 1 {
			t.Errorf("verify-ledger on a reordered ledger: exit %d, want 1", code)
		} else {
			t.Logf("verify-ledger on a reordered ledger: exit %d: %s", code, strings.TrimSpace(stderr))
		}
	}
}

func readCSV(t *testing.T, s string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil {
		t.Fatalf("read CSV %q: %v", s, err)
	}
	return rows
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// mailbox1 parses the links of one message.
func mailbox1(t *testing.T, mp *mailpit, id string) demo.Links {
	t.Helper()
	l, err := demo.ParseLinks(mp.Raw(id))
	if err != nil {
		t.Fatalf("message %s: %v", id, err)
	}
	return l
}
