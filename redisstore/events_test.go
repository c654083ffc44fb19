package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/redisstore"
)

// launchHooked launches campaign id of n recipients a<i>@example.com
// with hooks webhooks, and mails them all.
func launchHooked(t *testing.T, s *redisstore.Store, id string, n, hooks int) {
	t.Helper()
	ctx := context.Background()
	c := repermit.Campaign{ID: id, From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour)}
	for i := 0; i < hooks; i++ {
		c.Webhooks = append(c.Webhooks, repermit.Webhook{URL: fmt.Sprintf("https://crm%d.example/hook", i), Secret: "whsec_c2VjcmV0"})
	}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := imp.Add(ctx, fmt.Sprintf("a%d@example.com", i), "", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: id, Imported: int64(n)}); err != nil {
		t.Fatal(err)
	}
	mail(t, s, id, span(0, int64(n)), t0)
}

// deliver reads everything webhook st of campaign id has to deliver, max
// items a read, as the worker does, and names each item: "record <recipient>
// <answer>" or "<type> <recipient> <subject> <source>".
func deliver(t *testing.T, s *redisstore.Store, id string, hook int, max int64) []string {
	t.Helper()
	ctx := context.Background()
	st, err := s.Webhook(ctx, id, hook)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for reads := 0; ; reads++ {
		if reads > 100 {
			t.Fatalf("max %d: no end after 100 reads: %v", max, out)
		}
		items, err := s.WebhookItems(ctx, id, st, max)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(items)) > max {
			t.Fatalf("max %d: a read returned %d items", max, len(items))
		}
		if len(items) == 0 {
			return out
		}
		for _, it := range items {
			if it.Event != nil {
				e := it.Event
				name := fmt.Sprintf("%s %d %s %s", e.Type, e.Recipient, e.Subject, e.Source)
				if e.Stop != nil {
					name = fmt.Sprintf("%s wave %d: %s", e.Type, e.Stop.Wave, e.Stop.Reason())
				}
				out = append(out, strings.TrimSpace(name))
				st.EventPosition, st.EventsDelivered = e.StreamID, st.EventsDelivered+1
				continue
			}
			rec, err := repermit.DecodeStoredRecord(it.Record)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("record %d %s", rec.Recipient, rec.Answer))
			st.Position, st.Delivered = it.LedgerID, st.Delivered+1
		}
		if err := s.WebhookDelivered(ctx, id, hook, st); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWebhookEventsFollowTheChangesInOrder: answers (consent log), a
// bounce, a complaint, a pause of the waves and expiries (the outbox) come
// out in the order they happened, whatever the size of a read, each
// outbox event with the keyed hash of the erased address; an outbox event
// is dropped only once every webhook has it; a campaign without webhooks
// writes no outbox.
func TestWebhookEventsFollowTheChangesInOrder(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launchHooked(t, s, "hooked", 6, 2)
	key, err := s.SubjectKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subject := func(i int) string { h, _ := consentlog.Subject(key, fmt.Sprintf("a%d@example.com", i)); return h }
	recipient := func(i int64) *repermit.Recipient {
		t.Helper()
		r, err := s.Recipient(ctx, "hooked", i)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	answer := func(i int64, st repermit.State) {
		t.Helper()
		if _, err := s.Record(ctx, redisstore.Answer{Campaign: "hooked", Index: i, State: st, At: t0.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	complain := func(i int64, key string) {
		t.Helper()
		sub, err := s.SubjectOf(ctx, recipient(i))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.RecordFeedback(ctx, redisstore.Feedback{Campaign: "hooked", Index: i, Key: key,
			Kind: redisstore.FeedbackComplaint, Source: "arf", At: t0.Add(2 * time.Minute), Subject: sub})
		if err != nil {
			t.Fatal(err)
		}
	}

	answer(0, repermit.StateConfirmed)
	if err := s.BounceFrom(ctx, recipient(1), t0.Add(time.Minute), "dsn"); err != nil {
		t.Fatal(err)
	}
	answer(2, repermit.StateUnsubscribed) // as a complaint does, before its report is counted
	complain(2, "arf-1")
	complain(2, "arf-1") // the same report again: no event
	answer(3, repermit.StateConfirmed)
	answer(3, repermit.StateDeclined)
	stop := redisstore.WaveStop{At: t0.Add(3 * time.Minute), Wave: 1, NextWave: 2, Crossed: []repermit.Crossing{
		{Scope: "wave 1", Kind: "complaints", Count: 1, Recipients: 6, Threshold: repermit.Threshold{Count: 1}}}}
	if paused, err := s.StopWaves(ctx, "hooked", stop); err != nil || !paused {
		t.Fatalf("StopWaves: %v %v", paused, err)
	}
	if _, _, err := s.ExpireBucket(ctx, "hooked", 0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"record 0 confirmed",
		"bounced 1 " + subject(1) + " dsn",
		"record 2 unsubscribed",
		"complained 2 " + subject(2) + " arf",
		"record 3 confirmed",
		"record 3 declined",
		"paused wave 1: " + stop.Reason(),
		"expired 4 " + subject(4),
		"expired 5 " + subject(5),
	}
	for _, max := range []int64{1, 2, 3, 500} {
		// Hook 1 reads afresh each time; it never stores its position.
		if got := deliver(t, s, "hooked", 1, max); !slices.Equal(got, want) {
			t.Errorf("read %d at a time:\n got %q\nwant %q", max, got, want)
		}
		if err := s.WebhookDelivered(ctx, "hooked", 1, redisstore.WebhookState{}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Stats(ctx, "hooked")
	if err != nil {
		t.Fatal(err)
	}
	// Hook 0 delivered nothing yet: all 9 are its backlog.
	if st.LedgerRecords != 4 || st.Events != 5 || st.WebhookBacklog(0) != 9 {
		t.Errorf("records %d, events %d, backlog %d; want 4, 5, 9", st.LedgerRecords, st.Events, st.WebhookBacklog(0))
	}

	// Hook 0 gets everything and trims; hook 1 has not read yet and still
	// gets every event.
	if got := deliver(t, s, "hooked", 0, 4); !slices.Equal(got, want) {
		t.Errorf("hook 0:\n got %q\nwant %q", got, want)
	}
	if err := s.TrimEvents(ctx, "hooked", 2); err != nil {
		t.Fatal(err)
	}
	if got := deliver(t, s, "hooked", 1, 500); !slices.Equal(got, want) {
		t.Errorf("hook 1 after hook 0 trimmed:\n got %q\nwant %q", got, want)
	}
	if st, _ := s.Stats(ctx, "hooked"); st.WebhookBacklog(0) != 0 || st.WebhookBacklog(1) != 0 {
		t.Errorf("backlogs %d, %d after both delivered all; want 0", st.WebhookBacklog(0), st.WebhookBacklog(1))
	}

	launchHooked(t, s, "plain", 3, 0)
	r, err := s.Recipient(ctx, "plain", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.BounceFrom(ctx, r, t0, "smtp"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ExpireBucket(ctx, "plain", 0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(ctx, "plain"); st.Events != 0 {
		t.Errorf("a campaign without webhooks wrote %d outbox events", st.Events)
	}
	if items, err := s.WebhookItems(ctx, "plain", redisstore.WebhookState{}, 10); err != nil || len(items) != 0 {
		t.Errorf("a campaign without webhooks has %d items to deliver (%v)", len(items), err)
	}
}
