package web

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// TestAnswerFromTheLandingPageSkipsTheRead: the answer posted from a
// landing page this process showed is written without reading the
// recipient again: one command fewer than an answer posted cold.
func TestAnswerFromTheLandingPageSkipsTheRead(t *testing.T) {
	// One locale, so that every page has the same wording, kept once.
	h := newCampaignHarness(t, repermit.Campaign{}, []string{"de", "de", "de"})
	post := func(idx uint32) int64 {
		t.Helper()
		before := h.commands.Load()
		wantStatus(t, "confirm", h.postForm(h.confirmPath(idx), confirmForm("confirm", "yoga")), http.StatusOK)
		return h.commands.Load() - before
	}
	post(0) // reads the ledger head and keeps the wording
	cold := post(1)
	wantStatus(t, "landing", h.get(h.confirmPath(2)), http.StatusOK)
	landed := post(2)
	if landed != cold-1 {
		t.Errorf("answer after its landing page sent %d commands, a cold one %d; want one fewer", landed, cold)
	}
	for i := range int64(3) {
		if r := h.recipient(i); r.State != repermit.StateConfirmed || strings.Join(r.Topics, ",") != "yoga" {
			t.Errorf("recipient %d: %s %v", i, r.State, r.Topics)
		}
	}
}

// TestAnswerFromAnOldLandingPage: the recipient answered elsewhere (a
// second tab, another web process) after this process showed the page.
// The answer from the old page is made from the recipient as it is now.
func TestAnswerFromAnOldLandingPage(t *testing.T) {
	h := newHarness(t)
	elsewhere := func(idx int64, st repermit.State, topics ...string) {
		t.Helper()
		_, err := h.store.Record(context.Background(), redisstore.Answer{Campaign: h.c.ID, Index: idx, State: st, Topics: topics, At: t0.Add(time.Hour), IP: "192.0.2.9", UserAgent: "other"})
		if err != nil {
			t.Fatal(err)
		}
	}
	wantStatus(t, "landing 0", h.get(h.confirmPath(0)), http.StatusOK)
	wantStatus(t, "landing 1", h.get(h.confirmPath(1)), http.StatusOK)
	elsewhere(0, repermit.StateConfirmed, "yoga", "events")
	elsewhere(1, repermit.StateDeclined)

	wantStatus(t, "narrowing from the old page", h.postForm(h.confirmPath(0), confirmForm("confirm", "yoga")), http.StatusOK)
	wantStatus(t, "confirm after decline from the old page", h.postForm(h.confirmPath(1), confirmForm("confirm", "yoga")), http.StatusOK)

	recs := h.ledger()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3 (two answers elsewhere, one narrowing): %+v", len(recs), recs)
	}
	if last := recs[2]; last.Recipient != 0 || strings.Join(last.TopicsBefore, ",") != "yoga,events" || strings.Join(last.Topics, ",") != "yoga" {
		t.Errorf("narrowing recorded as %+v, want recipient 0 from yoga,events to yoga", last)
	}
	if r := h.recipient(1); r.State != repermit.StateDeclined {
		t.Errorf("recipient 1 is %s after a confirm from the page shown before their decline", r.State)
	}
}

// TestLandedCacheForgets: an entry goes with its answer, after its TTL,
// or when the cache is full and it is the oldest.
func TestLandedCacheForgets(t *testing.T) {
	now := t0
	newCache := func() *landedCache {
		lc := newLandedCache(time.Minute)
		lc.now = func() time.Time { return now }
		return lc
	}
	sent := func(idx int64) *repermit.Recipient {
		return &repermit.Recipient{Campaign: "camp", Index: idx, State: repermit.StateSent, Revision: "s1|"}
	}
	t.Run("keeps what an answer needs", func(t *testing.T) {
		lc := newCache()
		r := &repermit.Recipient{Campaign: "camp", Index: 7, Email: "anna@example.com", Name: "Anna", Locale: "de-AT",
			Extra: map[string]string{"city": "Wien"}, State: repermit.StateSent, Step: 2, Revision: "s2|"}
		lc.put(3, r)
		got := lc.take(3, "camp", 7)
		want := &repermit.Recipient{Campaign: "camp", Index: 7, Email: "anna@example.com", Locale: "de-AT", State: repermit.StateSent, Step: 2, Revision: "s2|"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("took %+v, want %+v", got, want)
		}
	})
	t.Run("another campaign's recipient is another entry", func(t *testing.T) {
		lc := newCache()
		lc.put(3, sent(1))
		if lc.take(4, "other", 1) != nil {
			t.Error("recipient 1 of campaign 3 taken for campaign 4")
		}
	})
	t.Run("a row too long is not kept", func(t *testing.T) {
		lc := newCache()
		r := sent(1)
		r.Email = strings.Repeat("a", maxLandedRow) + "@example.com"
		lc.put(3, r)
		if lc.take(3, "camp", 1) != nil {
			t.Error("kept a row longer than maxLandedRow")
		}
	})
	t.Run("taken once", func(t *testing.T) {
		lc := newCache()
		lc.put(3, sent(1))
		if lc.take(3, "camp", 1) == nil {
			t.Fatal("not kept")
		}
		if lc.take(3, "camp", 1) != nil {
			t.Error("taken twice")
		}
	})
	t.Run("after its TTL", func(t *testing.T) {
		lc := newCache()
		lc.put(3, sent(1))
		now = now.Add(time.Minute)
		if lc.take(3, "camp", 1) != nil {
			t.Error("taken after its TTL")
		}
	})
	t.Run("answered recipients are not kept", func(t *testing.T) {
		lc := newCache()
		r := sent(1)
		r.State = repermit.StateConfirmed
		lc.put(3, r)
		if lc.take(3, "camp", 1) != nil {
			t.Error("a confirmed recipient was kept")
		}
	})
	t.Run("the oldest when full", func(t *testing.T) {
		lc := newCache()
		for i := range int64(maxLanded + 1) {
			lc.put(3, sent(i))
		}
		if len(lc.m) != maxLanded {
			t.Errorf("%d entries, want %d", len(lc.m), maxLanded)
		}
		if lc.take(3, "camp", 0) != nil {
			t.Error("the oldest entry was kept past the bound")
		}
		if lc.take(3, "camp", maxLanded) == nil {
			t.Error("the newest entry was not kept")
		}
	})
}

// TestLandedCacheFullFitsItsBound: a full cache of addresses of 30 bytes
// stays within the few MB landed.go and the README give (6.5 MB when
// measured; the bound leaves room for the runtime's own allocations).
func TestLandedCacheFullFitsItsBound(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lc := newLandedCache(time.Hour)
	for i := range int64(maxLanded) {
		lc.put(7, &repermit.Recipient{Campaign: "camp", Index: i, Email: fmt.Sprintf("firstname.lastname%06d@example.com", i)[:30],
			Locale: "de", State: repermit.StateSent, Step: 1, Revision: "s1|"})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d entries: %.1f MB, %d bytes an entry", len(lc.m), float64(used)/1e6, used/int64(len(lc.m)))
	if len(lc.m) != maxLanded {
		t.Fatalf("%d entries kept, want %d", len(lc.m), maxLanded)
	}
	if used > 8<<20 {
		t.Errorf("a full cache holds %.1f MB of heap, want at most 8 MiB", float64(used)/1e6)
	}
	runtime.KeepAlive(lc)
}
