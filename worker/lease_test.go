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
// 300 ms lease and a server that takes 2 s to accept the mail, the
// recipient stays claimed for the whole transaction (another worker's
// claim is busy, the reconcile does not see it waiting) and gets one mail.
func TestASlowMailKeepsItsClaimWhileItsWorkerLives(t *testing.T) {
	const lease, slow = 300 * time.Millisecond, 2 * time.Second
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
	// The point is time passing: several leases into the transaction, a
	// claim that was not renewed would have run out.
	time.Sleep(4 * lease)
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
