package worker

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/smtpsink"
)

// TestLostQueueStillMailsEveryoneOnce deletes every key asynq keeps for the
// queue in the middle of a campaign (its queued send tasks, the feeder's
// chain, the expiry): the sweep re-arms the chain and the reconcile
// re-feeds whom the lost tasks named, so every address still gets its
// initial mail, exactly once.
func TestLostQueueStillMailsEveryoneOnce(t *testing.T) {
	const n = 600
	e := newEnv(t, smtpsink.Options{})
	c := e.launch(repermit.Campaign{Rate: repermit.Rate{PerSecond: 100}}, n, nil)
	e.start(e.config())
	e.waitFor("a third of the mails", 10*time.Second, func() bool { return e.sink.Count() >= n/3 })
	ctx := context.Background()
	deleted := 0
	for _, pattern := range []string{"asynq:{" + e.r.Prefix + "}:*"} {
		keys, err := e.r.Client.Keys(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) > 0 {
			deleted += int(e.r.Client.Del(ctx, keys...).Val())
		}
	}
	if deleted == 0 {
		t.Fatal("no asynq key deleted; the test would not test anything")
	}
	atLoss := e.sink.Count()
	e.waitFor("every address mailed", 30*time.Second, func() bool { return len(e.initialMailed()) == n })
	time.Sleep(time.Second) // a late duplicate would arrive now
	t.Logf("deleted %d asynq keys after %d of %d mails; every address mailed", deleted, atLoss, n)
	e.assertNoDuplicates()
	if st := e.stats(c.ID); st.Counts[repermit.StateSent] != n {
		t.Errorf("counts %v, want all %d sent", st.Counts, n)
	}
}

// TestARecipientIsRetriedPastMaxAttempts: a recipient whose server keeps
// answering 451 is not given up after MaxAttempts; it is mailed once the
// server takes it, before the deadline.
func TestARecipientIsRetriedPastMaxAttempts(t *testing.T) {
	const n, stubborn = 20, "r3@example.com"
	e := newEnv(t, smtpsink.Options{Reject: func(rcpt string, attempt int) *smtp.SMTPError {
		if rcpt == stubborn && attempt <= 6 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}})
	c := e.launch(repermit.Campaign{}, n, nil)
	cfg := e.config()
	cfg.MaxAttempts = 2
	cfg.DomainTempFailures = 100
	e.start(cfg)
	e.waitFor("every address mailed", 20*time.Second, func() bool { return len(e.initialMailed()) == n })
	e.assertNoDuplicates()
	if got := e.counters.TemporaryN.Load(); got < 6 {
		t.Errorf("%d temporary failures, want the stubborn address's 6", got)
	}
	if st := e.stats(c.ID); st.Counts[repermit.StateSent] != n {
		t.Errorf("counts %v", st.Counts)
	}
}
