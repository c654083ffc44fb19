package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
)

// TestASlowMailKeepsItsClaimWhileItsWorkerLives: the claim lease is not
// sized for the slowest SMTP server; a live worker renews it. With a
// 1 s lease and a server that takes 4 s to accept the mail, the
// recipient stays claimed for the whole transaction (another worker's
// claim is busy, the reconcile does not see it waiting) and gets one mail.
func TestASlowMailKeepsItsClaimWhileItsWorkerLives(t *testing.T) {
	const lease, slow = time.Second, 4 * time.Second
	inData := make(chan struct{}, 1)
	e := newEnv(t, smtpsink.Options{RejectData: func(string, []string) *smtp.SMTPError {
		select {
		case inData <- struct{}{}:
		default:
		}
		time.Sleep(slow)
		return nil
	}})
	c := e.launch(repermit.Campaign{}, 1, nil)
	cfg := e.config()
	cfg.ClaimLease = lease
	e.start(cfg)
	select {
	case <-inData:
	case <-time.After(10 * time.Second):
		t.Fatal("the mail never reached the end of DATA")
	}
	// The point is time passing: two and a half leases into the
	// transaction, a claim that was not renewed would have run out. (A
	// lease of whole seconds: renewals every quarter lease stay on time on
	// a loaded machine.)
	time.Sleep(5 * lease / 2)
	ctx := context.Background()
	now := time.Now()
	waiting, _, err := e.store.Unmailed(ctx, c.ID, 0, redisstore.Buckets(1), 1, 1, now)
	if err != nil || len(waiting) != 0 {
		t.Errorf("during the slow mail, Unmailed = %v (%v); want nobody waiting (the claim is live)", waiting, err)
	}
	errs, err := e.store.ClaimBatch(ctx, c.ID, []int64{0}, 1, now, lease)
	if err != nil || !errors.Is(errs[0], redisstore.ErrBusy) {
		t.Errorf("another worker's claim during the slow mail: %v %v; want busy", errs, err)
	}
	e.waitFor("the slow mail", 10*time.Second, func() bool { return len(e.initialMailed()) == 1 })
	e.waitSendsDone(10 * time.Second)
	e.assertNoDuplicates()
	if st := e.stats(c.ID); st.Counts[repermit.StateSent] != 1 {
		t.Errorf("counts %v, want the one recipient sent", st.Counts)
	}
}
