package web

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/export"
	"github.com/repermit/repermit/token"
)

// TestConfirmedRecipientWithdrawsAfterTheDeadline: after the deadline (and
// after the expiry ran), a confirmed recipient's RFC 8058 one-click POST,
// a decline on the landing page, and a change of topics all work: the
// state changes, the ledger has the record, the address is suppressed and
// gone from the confirmed export. After the retention purged the records,
// both withdrawals still suppress the person, by the address hash kept.
func TestConfirmedRecipientWithdrawsAfterTheDeadline(t *testing.T) {
	tests := []struct {
		name   string
		purged bool // the retention ended before the answer
		path   func(h *harness) string
		form   url.Values
		want   repermit.State
		topics []string
	}{
		{"RFC 8058 one-click", false, func(h *harness) string { return h.unsubPath(1) }, url.Values{"List-Unsubscribe": {"One-Click"}}, repermit.StateUnsubscribed, nil},
		{"decline on the page", false, func(h *harness) string { return h.confirmPath(1) }, confirmForm("decline"), repermit.StateDeclined, nil},
		{"fewer topics", false, func(h *harness) string { return h.confirmPath(1) },
			url.Values{"choice": {"confirm"}, "topic": {"events"}, "change": {"topics"}}, repermit.StateConfirmed, []string{"events"}},
		{"RFC 8058 one-click after the retention", true, func(h *harness) string { return h.unsubPath(1) }, url.Values{"List-Unsubscribe": {"One-Click"}}, repermit.StateUnsubscribed, nil},
		{"decline on the page after the retention", true, func(h *harness) string { return h.confirmPath(1) }, confirmForm("decline"), repermit.StateDeclined, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			wantStatus(t, "confirm", h.postForm(h.confirmPath(1), confirmForm("confirm", "yoga", "events")), http.StatusOK)
			h.setNow(h.c.Deadline.Add(time.Hour))
			for b := int64(0); b < 1; b++ {
				if _, _, err := h.store.ExpireBucket(ctx, h.c.ID, b, h.c.Deadline); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.store.SetStatus(ctx, h.c.ID, repermit.StatusFinished, repermit.StatusRunning); err != nil {
				t.Fatal(err)
			}
			if tt.purged {
				if err := h.store.PurgeRecipients(ctx, h.c.ID); err != nil {
					t.Fatal(err)
				}
				if rec := h.recipient(1); rec.Email != "" || rec.State != repermit.StateConfirmed {
					t.Fatalf("after the purge: %+v, want confirmed without an address", rec)
				}
			}
			if w := h.get(tt.path(h)); w.Code != http.StatusOK {
				t.Fatalf("GET after the deadline: %d\n%s", w.Code, w.Body.String())
			}
			w := h.postForm(tt.path(h), tt.form)
			wantStatus(t, "POST", w, http.StatusOK)
			rec := h.recipient(1)
			if rec.State != tt.want || !slices.Equal(rec.Topics, tt.topics) {
				t.Errorf("after the late answer: %s %v, want %s %v", rec.State, rec.Topics, tt.want, tt.topics)
			}
			led := h.ledger()
			last := led[len(led)-1]
			if len(led) != 2 || last.Answer != tt.want || last.Recipient != 1 || !last.At.After(h.c.Deadline) {
				t.Errorf("ledger after the late answer: %+v", led)
			}
			sup, err := h.store.IsSuppressed(ctx, []string{repermit.AddressHash("r1@example.com")})
			if err != nil || sup[0] != (tt.want != repermit.StateConfirmed) {
				t.Errorf("suppressed = %v (%v) after %s", sup, err, tt.want)
			}
			var csv bytes.Buffer
			if err := export.Confirmed(ctx, &csv, h.store, h.c.ID); err != nil {
				t.Fatal(err)
			}
			if listed := strings.Contains(csv.String(), "r1@example.com"); listed != (tt.want == repermit.StateConfirmed) {
				t.Errorf("confirmed export lists r1: %v, after %s:\n%s", listed, tt.want, csv.String())
			}
		})
	}
}

// TestNarrowingTopicsIsAnAnswer: a confirmed recipient narrows from two
// topics to one; the counts, the ledger and the page agree, and the page
// shows their own choice ticked. Unticking the last topic declines.
func TestNarrowingTopicsIsAnAnswer(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	wantStatus(t, "confirm", h.postForm(h.confirmPath(1), confirmForm("confirm", "yoga", "events")), http.StatusOK)
	page := h.get(h.confirmPath(1)).Body.String()
	for _, want := range []string{`value="yoga" checked`, `value="events" checked`, `name="change" value="topics"`} {
		if !strings.Contains(page, want) {
			t.Errorf("landing page of the confirmed lacks %q", want)
		}
	}
	w := h.postForm(h.confirmPath(1), url.Values{"choice": {"confirm"}, "topic": {"yoga"}, "change": {"topics"}})
	wantStatus(t, "narrow", w, http.StatusOK)
	if strings.Contains(w.Body.String(), "recorded this answer before") {
		t.Error("the change was shown as a replay")
	}
	st, err := h.store.Stats(ctx, h.c.ID)
	if err != nil || st.Topics["yoga"] != 1 || st.Topics["events"] != 0 || st.Counts[repermit.StateConfirmed] != 1 {
		t.Errorf("counts after narrowing: %+v %v", st, err)
	}
	led := h.ledger()
	if len(led) != 2 || !slices.Equal(led[1].TopicsBefore, []string{"yoga", "events"}) || !slices.Equal(led[1].Topics, []string{"yoga"}) {
		t.Fatalf("ledger after narrowing: %+v", led)
	}
	// The change was made on the page that offers it: its own wording.
	if led[1].Wording == "" || led[1].Wording == led[0].Wording {
		t.Errorf("wording hashes %q (first answer) and %q (change of topics); want two different ones", led[0].Wording, led[1].Wording)
	}
	page = h.get(h.confirmPath(1)).Body.String()
	if !strings.Contains(page, `value="yoga" checked`) || strings.Contains(page, `value="events" checked`) {
		t.Errorf("page after narrowing does not tick yoga alone:\n%s", page)
	}

	// Widening again is an answer too.
	wantStatus(t, "widen", h.postForm(h.confirmPath(1), url.Values{"choice": {"confirm"}, "topic": {"yoga", "events"}, "change": {"topics"}}), http.StatusOK)
	if st, err := h.store.Stats(ctx, h.c.ID); err != nil || st.Topics["yoga"] != 1 || st.Topics["events"] != 1 {
		t.Errorf("counts after widening: %+v %v", st.Topics, err)
	}
	if led := h.ledger(); len(led) != 3 || !slices.Equal(led[2].TopicsBefore, []string{"yoga"}) || !slices.Equal(led[2].Topics, []string{"yoga", "events"}) {
		t.Errorf("ledger after widening: %+v", led)
	}
	page = h.get(h.confirmPath(1)).Body.String()
	if !strings.Contains(page, `value="yoga" checked`) || !strings.Contains(page, `value="events" checked`) {
		t.Errorf("page after widening does not tick both:\n%s", page)
	}

	wantStatus(t, "untick all", h.postForm(h.confirmPath(1), url.Values{"choice": {"confirm"}, "change": {"topics"}}), http.StatusOK)
	if rec := h.recipient(1); rec.State != repermit.StateDeclined {
		t.Errorf("after unticking every topic: %s, want declined", rec.State)
	}
	if st, _ := h.store.Stats(ctx, h.c.ID); st.Topics["yoga"] != 0 || st.Topics["events"] != 0 {
		t.Errorf("topic counts after the decline: %v", st.Topics)
	}
}

// TestGonePagesSayWhy: only those who can no longer answer get 410, and
// the page says the right thing for each: the expired were asked and
// deleted, the unreached never asked, the purged have nothing left here.
func TestGonePagesSayWhy(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// A second campaign of two: r0 mailed and silent, r1 never mailed.
	c := repermit.Campaign{ID: "late", From: "ACME News <news@acme.example>", Subject: "ACME News", StartAt: t0, Deadline: t0.Add(2 * time.Hour)}
	imp, err := h.store.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"x0@example.com", "x1@example.com"} {
		if err := imp.Add(ctx, a, "", "en", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "late", Imported: 2}); err != nil {
		t.Fatal(err)
	}
	c = imp.Campaign()
	if errs, err := h.store.ClaimBatch(ctx, "late", []int64{0}, 1, t0, time.Minute); err != nil || errs[0] != nil {
		t.Fatal(errs, err)
	}
	if err := h.store.MarkSent(ctx, "late", 0, 1, t0); err != nil {
		t.Fatal(err)
	}
	link := func(p token.Purpose, idx uint32) string {
		prefix := map[token.Purpose]string{token.Confirm: "/c/", token.Unsubscribe: "/u/"}[p]
		return prefix + h.signer.Sign(token.Claims{Purpose: p, Campaign: c.ID, CampaignSeq: c.Seq, Recipient: idx, Deadline: c.Deadline})
	}
	h.setNow(c.Deadline.Add(time.Minute))
	check := func(stage string, idx uint32, want string) {
		t.Helper()
		for _, p := range []token.Purpose{token.Confirm, token.Unsubscribe} {
			for method, w := range map[string]*httptest.ResponseRecorder{"GET": h.get(link(p, idx)), "POST": h.postForm(link(p, idx), confirmForm("decline"))} {
				if w.Code != http.StatusGone || !strings.Contains(w.Body.String(), want) {
					t.Errorf("%s: recipient %d, %s %s: status %d, page lacks %q", stage, idx, method, p2s(p), w.Code, want)
				}
			}
		}
	}
	check("before the expiry ran", 0, "As you did not answer")
	check("before the expiry ran", 1, "before we asked you")
	if _, _, err := h.store.ExpireBucket(ctx, "late", 0, c.Deadline); err != nil {
		t.Fatal(err)
	}
	if err := h.store.SetStatus(ctx, "late", repermit.StatusFinished, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	check("expired", 0, "As you did not answer")
	check("unreached", 1, "before we asked you")
	if err := h.store.PurgeRecipients(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	check("purged", 0, "keep no record of you")
	check("purged", 1, "keep no record of you")
}

func p2s(p token.Purpose) string {
	if p == token.Confirm {
		return "/c"
	}
	return "/u"
}
