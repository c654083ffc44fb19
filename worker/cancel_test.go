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
	e := newEnv(t, smtpsink.Options{})
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
	mailed := int64(len(e.initialMailed()))
	if st.Counts[repermit.StateExpired] != mailed || st.Counts[repermit.StateUnreached] != n-mailed || st.Counts.Total() != n {
		t.Errorf("counts after the deadline: %v, want %d expired (mailed) and %d unreached", st.Counts, mailed, n-mailed)
	}
	r, err := e.store.Recipient(ctx, c.ID, n-1)
	if err != nil || r.State != repermit.StateUnreached || r.Email != addr(n-1, nil) {
		t.Errorf("never-mailed recipient after the deadline: %+v %v; want unreached with its address", r, err)
	}
	if sup, err := e.store.IsSuppressed(ctx, []string{repermit.AddressHash(addr(n-1, nil))}); err != nil || sup[0] {
		t.Errorf("never-mailed recipient suppressed: %v %v", sup, err)
	}
}
