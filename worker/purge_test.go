package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
)

func TestRetentionEndPurgesRecipientsButKeepsCountsAndLedger(t *testing.T) {
	e := newEnv(t, smtpsink.Options{Discard: true})
	start := time.Now()
	c := e.launch(repermit.Campaign{StartAt: start, Deadline: start.Add(2 * time.Second), Retention: time.Second}, 20, nil)
	if _, err := e.store.Record(context.Background(), redisstore.Answer{Campaign: c.ID, Index: 3, State: repermit.StateConfirmed, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.start(e.config())
	e.waitFor("campaign finished", 10*time.Second, func() bool { return e.status(c.ID) == repermit.StatusFinished })
	purged := func() bool {
		_, err := e.store.Recipient(context.Background(), c.ID, 4)
		return repermit.ErrorCode(err) == repermit.ENOTFOUND
	}
	if purged() {
		t.Fatal("recipient records gone before the retention ended")
	}
	e.waitFor("retention purge", 15*time.Second, purged)
	st := e.stats(c.ID)
	if st.Counts[repermit.StateConfirmed] != 1 || st.Counts.Total() != 20 || st.LedgerRecords != 1 {
		t.Errorf("after the purge: %+v", st)
	}
	// Of the confirmed recipient only the address's hash stays, for its
	// unsubscribe link; no address anywhere.
	r, err := e.store.Recipient(context.Background(), c.ID, 3)
	if err != nil || r.State != repermit.StateConfirmed || r.Email != "" || r.AddressHash != repermit.AddressHash(addr(3, nil)) {
		t.Errorf("confirmed recipient after the purge: %+v %v", r, err)
	}
	for _, k := range e.r.Keys(t) {
		if !strings.Contains(k, "{"+c.ID+"}:b:") {
			continue
		}
		for f, v := range e.r.Client.HGetAll(context.Background(), k).Val() {
			if strings.Contains(v, "@") {
				t.Errorf("%s %s holds %q after the purge", k, f, v)
			}
		}
	}
}
