package worker

import (
	"context"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/smtpsink"
)

func TestCancelledCampaignStillExpiresAndErasesAtTheDeadline(t *testing.T) {
	const n = 200
	e := newEnv(t, smtpsink.Options{Discard: true})
	start := time.Now()
	c := e.launch(repermit.Campaign{StartAt: start, Deadline: start.Add(3 * time.Second), Rate: repermit.Rate{PerSecond: 50}}, n, nil)
	e.start(e.config())
	ctx := context.Background()
	e.waitFor("some mails", 3*time.Second, func() bool { return e.sink.Count() >= 20 })
	if err := e.store.SetStatus(ctx, c.ID, repermit.StatusCancelled, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the deadline's expiry", 10*time.Second, func() bool { return e.status(c.ID) == repermit.StatusFinished })
	if !time.Now().After(c.Deadline) {
		t.Error("a cancelled campaign expired before its deadline")
	}
	st := e.stats(c.ID)
	if st.Counts[repermit.StateExpired] != n || st.Counts.Total() != n {
		t.Errorf("counts after the deadline: %v, want all %d expired", st.Counts, n)
	}
	r, err := e.store.Recipient(ctx, c.ID, n-1)
	if err != nil || r.Email != "" {
		t.Errorf("never-mailed recipient kept its address after expiry: %+v %v", r, err)
	}
}
