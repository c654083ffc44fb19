package worker

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
)

var confirmLink = regexp.MustCompile(`https://consent\.acme\.example/c/([A-Za-z0-9_-]+)`)

func TestEveryRecipientGetsExactlyOneInitialMail(t *testing.T) {
	n := scaled(10000, 5)
	e := newEnv(t, smtpsink.Options{})
	c := e.launch(repermit.Campaign{}, n, nil)
	began := time.Now()
	e.start(e.config())
	// The test is about exactly once, not speed (the rate is only logged):
	// under -race on a loaded two-core CI machine 10,000 mails took over 60 s.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := e.sink.WaitFor(ctx, n); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(began)
	t.Logf("%d mails in %v: %.0f mails/s", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	e.waitFor("every recipient recorded as sent", 10*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateSent] == int64(n)
	})
	e.waitSendsDone(10 * time.Second) // a duplicate would be in the sink now
	if got := e.sink.Count(); got != n {
		t.Errorf("sink accepted %d mails, want %d", got, n)
	}
	e.assertNoDuplicates()

	msgs := e.sink.Messages()
	seen := make(map[string]bool)
	for i, m := range msgs {
		if len(m.To) != 1 {
			t.Fatalf("mail %d to %v, want one recipient", i, m.To)
		}
		seen[m.To[0]] = true
		if i%97 != 0 { // parse a sample; the counts above cover all
			continue
		}
		for _, h := range []string{"Message-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "From", "Subject"} {
			if m.Header.Get(h) == "" {
				t.Errorf("mail to %s lacks %s", m.To[0], h)
			}
		}
		p := parts(t, m.Data)
		if p["text/plain"] == "" || p["text/html"] == "" {
			t.Fatalf("mail to %s: parts %v, want text and HTML", m.To[0], keys(p))
		}
		match := confirmLink.FindStringSubmatch(p["text/plain"])
		if match == nil {
			t.Fatalf("mail to %s has no confirm link:\n%s", m.To[0], p["text/plain"])
		}
		claims, err := e.signer.Verify(match[1], time.Now())
		if err != nil {
			t.Fatalf("confirm token of %s: %v", m.To[0], err)
		}
		if claims.Purpose != token.Confirm || claims.CampaignSeq != c.Seq || addr(int(claims.Recipient), nil) != m.To[0] {
			t.Errorf("mail to %s carries claims %+v", m.To[0], claims)
		}
		if !strings.Contains(p["text/html"], "/c/"+match[1]) {
			t.Errorf("mail to %s: HTML part lacks the confirm link", m.To[0])
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct recipients, want %d", len(seen), n)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRemindersReachOnlyTheUnanswered(t *testing.T) {
	const n = 300
	e := newEnv(t, smtpsink.Options{})
	// The offset must outlast the initial mails even under -race on a
	// loaded machine (3 s did not at a load average of 15), or the test
	// proves nothing and says so.
	c := e.launch(repermit.Campaign{Reminders: []time.Duration{6 * time.Second}}, n, nil)
	e.start(e.config())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.sink.WaitFor(ctx, n); err != nil {
		t.Fatal(err)
	}
	e.waitFor("initial mails recorded", 5*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateSent] == n
	})
	if time.Now().After(c.ReminderAt(1)) {
		t.Fatal("initial mails took longer than the reminder offset; the test proves nothing")
	}
	// An answer recorded before the reminder is due must keep the reminder
	// away. On a loaded machine the loop can run past the offset; an answer
	// recorded after it races the reminder fairly, so it may get one or not.
	answered := make(map[string]bool) // address -> answered before the offset
	for i := 0; i < n; i += 3 {
		state := repermit.StateConfirmed
		if i%2 == 0 {
			state = repermit.StateDeclined
		}
		_, err := e.store.Record(context.Background(), redisstore.Answer{Campaign: c.ID, Index: int64(i), State: state, At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		answered[addr(i, nil)] = time.Now().Before(c.ReminderAt(1))
	}
	late := 0
	for _, early := range answered {
		if !early {
			late++
		}
	}
	if late == len(answered) {
		t.Fatal("every answer came after the reminder offset; the test proves nothing")
	}
	unanswered := n - len(answered)
	if err := e.sink.WaitFor(ctx, n+unanswered); err != nil {
		t.Fatal(err)
	}
	e.waitFor("reminders recorded", 5*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateSent] == int64(unanswered)
	})
	e.waitSendsDone(10 * time.Second)
	e.assertNoDuplicates()
	reminded := 0
	for k := range e.perRecipient() {
		to, kind, _ := strings.Cut(k, " ")
		if kind != "reminder" {
			continue
		}
		reminded++
		if early, ok := answered[to]; ok && early {
			t.Errorf("%s answered before the reminder was due and still got one", to)
		}
	}
	if reminded < unanswered || reminded > unanswered+late {
		t.Errorf("%d reminders, want %d (plus at most %d answered late)", reminded, unanswered, late)
	}
	r, err := e.store.Recipient(context.Background(), c.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != repermit.StateSent || r.Step != 2 {
		t.Errorf("unanswered recipient: state %s step %d, want sent step 2", r.State, r.Step)
	}
}

func TestTemporaryFailuresStillMailEveryoneExactlyOnce(t *testing.T) {
	const n = 1000
	e := newEnv(t, smtpsink.Options{TempFailRate: 0.2, Seed: 7})
	c := e.launch(repermit.Campaign{}, n, func(i int) string { return fmt.Sprintf("d%d.example", i%10) })
	e.start(e.config())
	e.waitFor("every recipient mailed", 40*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateSent] == n
	})
	e.waitSendsDone(10 * time.Second)
	if got := e.sink.Count(); got != n {
		t.Errorf("sink accepted %d mails, want %d", got, n)
	}
	e.assertNoDuplicates()
	if e.counters.TemporaryN.Load() == 0 {
		t.Error("no temporary failure observed; the sink did not fail any attempt")
	}
}

func TestRejectedAddressesBounceAndAreSuppressed(t *testing.T) {
	const n = 100
	perm := map[string]bool{}
	for _, i := range []int{3, 17, 64, 99} {
		perm[addr(i, nil)] = true
	}
	e := newEnv(t, smtpsink.Options{PermFail: perm})
	c := e.launch(repermit.Campaign{}, n, nil)
	e.start(e.config())
	e.waitFor("all mailed or bounced", 10*time.Second, func() bool {
		st := e.stats(c.ID)
		return st.Counts[repermit.StateSent] == n-int64(len(perm)) && st.Counts[repermit.StateBounced] == int64(len(perm))
	})
	// Status and /metrics show bounces by source: these came as SMTP
	// replies. The report is counted just after the state change.
	e.waitFor("every rejection counted as an SMTP bounce", 5*time.Second, func() bool {
		return e.stats(c.ID).Feedback["bounced:smtp"] >= int64(len(perm))
	})
	if fb := e.stats(c.ID).Feedback; fb["bounced:smtp"] != int64(len(perm)) || len(fb) != 1 {
		t.Errorf("feedback by source %v, want exactly %d bounced:smtp", fb, len(perm))
	}
	ctx := context.Background()
	for _, i := range []int{3, 17, 64, 99} {
		r, err := e.store.Recipient(ctx, c.ID, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if r.State != repermit.StateBounced || r.Email != "" {
			t.Errorf("recipient %d: state %s email %q, want bounced and erased", i, r.State, r.Email)
		}
		supp, err := e.store.IsSuppressed(ctx, []string{repermit.AddressHash(addr(i, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if !supp[0] {
			t.Errorf("%s is not on the suppression list", addr(i, nil))
		}
	}
	if got := e.sink.Count(); got != n-len(perm) {
		t.Errorf("sink accepted %d, want %d", got, n-len(perm))
	}
}

func TestSuppressedAtSendTimeIsNeverMailed(t *testing.T) {
	const n = 50
	e := newEnv(t, smtpsink.Options{})
	ctx := context.Background()
	// Suppressed after the import, e.g. by another campaign's decline.
	c := e.launch(repermit.Campaign{StartAt: time.Now().Add(time.Second)}, n, nil)
	if err := e.store.AddSuppression(ctx, redisstore.ReasonDeclined, "other", time.Now(), repermit.AddressHash(addr(7, nil))); err != nil {
		t.Fatal(err)
	}
	e.start(e.config())
	e.waitFor("all handled", 10*time.Second, func() bool {
		st := e.stats(c.ID)
		return st.Counts[repermit.StateSent] == n-1 && st.Counts[repermit.StateSuppressed] == 1
	})
	for k := range e.perRecipient() {
		if strings.HasPrefix(k, addr(7, nil)+" ") {
			t.Errorf("suppressed %s was mailed", addr(7, nil))
		}
	}
}

func TestDuplicateTasksAndThreeWorkersSendNoDuplicates(t *testing.T) {
	n := int64(scaled(3000, 3))
	e := newEnv(t, smtpsink.Options{})
	c := e.launch(repermit.Campaign{StartAt: time.Now().Add(500 * time.Millisecond)}, int(n), nil)
	ctx := context.Background()
	// The same recipients enqueued again and again, as an at-least-once
	// queue might deliver them.
	for round := 0; round < 2; round++ {
		for lo := int64(0); lo < n; lo += 32 {
			var idxs []int64
			for i := lo; i < min(lo+32, n); i++ {
				idxs = append(idxs, i)
			}
			if err := e.sched.send(ctx, sendPayload{Campaign: c.ID, Step: 1, Indexes: idxs}, 0, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 3 {
		cfg := e.config()
		cfg.PoolSize = 4
		e.start(cfg)
	}
	e.waitFor("every recipient mailed", 30*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateSent] == n
	})
	e.waitSendsDone(10 * time.Second)
	if got := int64(e.sink.Count()); got != n {
		t.Errorf("sink accepted %d mails, want %d", got, n)
	}
	e.assertNoDuplicates()
}

func TestPauseStopsSendingAndResumeContinues(t *testing.T) {
	const n = 300
	e := newEnv(t, smtpsink.Options{Discard: true})
	c := e.launch(repermit.Campaign{Rate: repermit.Rate{PerSecond: 100}}, n, nil)
	e.start(e.config())
	ctx := context.Background()
	e.waitFor("some mails", 10*time.Second, func() bool { return e.sink.Count() >= 50 })
	if err := e.store.SetStatus(ctx, c.ID, repermit.StatusPaused, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	// The mails in flight finish; then every send task runs once more
	// while the campaign is paused.
	e.waitSendsDone(10 * time.Second)
	atPause := e.sink.Count()
	e.waitPausedRound(10 * time.Second)
	if got := e.sink.Count(); got != atPause {
		t.Fatalf("%d mails sent while paused", got-atPause)
	}
	if atPause >= n {
		t.Fatalf("all %d mails went out before the pause; the test proves nothing", atPause)
	}
	if err := e.store.SetStatus(ctx, c.ID, repermit.StatusRunning, repermit.StatusPaused); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	e.waitFor("a mail after resume", 5*time.Second, func() bool { return e.sink.Count() > atPause })
	t.Logf("first mail %v after resume", time.Since(resumed).Round(time.Millisecond))
	e.waitFor("every recipient mailed", 15*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateSent] == n
	})
	if got := e.sink.Count(); got != n {
		t.Errorf("sink accepted %d mails, want %d", got, n)
	}
}

func TestCancelStopsSendingForGood(t *testing.T) {
	const n = 300
	e := newEnv(t, smtpsink.Options{Discard: true})
	c := e.launch(repermit.Campaign{Rate: repermit.Rate{PerSecond: 100}}, n, nil)
	e.start(e.config())
	ctx := context.Background()
	e.waitFor("some mails", 10*time.Second, func() bool { return e.sink.Count() >= 50 })
	if err := e.store.SetStatus(ctx, c.ID, repermit.StatusCancelled, repermit.StatusRunning, repermit.StatusPaused); err != nil {
		t.Fatal(err)
	}
	// Every send task runs out: the mails in flight finish, the rest
	// end without mail.
	e.waitSendsDone(10 * time.Second)
	if got := e.sink.Count(); got >= n {
		t.Errorf("%d of %d mails sent despite the cancel", got, n)
	}
	st := e.stats(c.ID)
	if st.Counts[repermit.StatePending] == 0 || st.Counts.Total() != n {
		t.Errorf("counts after cancel: %v", st.Counts)
	}
}

func TestMessageRejectionPausesTheCampaign(t *testing.T) {
	const n = 100
	e := newEnv(t, smtpsink.Options{RejectData: func(string, []string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message rejected as spam"}
	}})
	c := e.launch(repermit.Campaign{}, n, nil)
	e.start(e.config())
	e.waitFor("campaign paused", 10*time.Second, func() bool { return e.status(c.ID) == repermit.StatusPaused })
	e.waitPausedRound(10 * time.Second)
	st := e.stats(c.ID)
	if st.Counts[repermit.StatePending] != n {
		t.Errorf("counts after the refusal: %v, want everyone pending", st.Counts)
	}
}

// TestDeadlineExpiresTheSilentAndKeepsTheUnreached: a campaign that runs
// short of time (400 at 80/s in 3 s) expires, erases and suppresses whom it
// mailed, and keeps whom it never reached, unsuppressed.
func TestDeadlineExpiresTheSilentAndKeepsTheUnreached(t *testing.T) {
	const n = 400
	e := newEnv(t, smtpsink.Options{})
	start := time.Now()
	c := e.launch(repermit.Campaign{StartAt: start, Deadline: start.Add(3 * time.Second), Rate: repermit.Rate{PerSecond: 80}}, n, nil)
	e.start(e.config())
	ctx := context.Background()
	e.waitFor("some mails", 3*time.Second, func() bool { return e.stats(c.ID).Counts[repermit.StateSent] >= 20 })
	for i := 0; i < 10; i++ {
		if _, err := e.store.Record(ctx, redisstore.Answer{Campaign: c.ID, Index: int64(i), State: repermit.StateConfirmed, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitFor("campaign finished", 10*time.Second, func() bool { return e.status(c.ID) == repermit.StatusFinished })
	// Every mail in flight lands before the mails and counts are read. A
	// mail claimed before the deadline may be accepted after the expiry
	// began: the expiry waits for its claim and counts it expired (asked).
	// A mail that went out after the expiry would show as mailed while its
	// recipient is unreached, and the counts below would not add up.
	e.waitSendsDone(10 * time.Second)
	st := e.stats(c.ID)
	mailed := e.initialMailed()
	silent := int64(len(mailed)) - 10
	if len(mailed) >= n || st.Counts[repermit.StateConfirmed] != 10 || st.Counts[repermit.StateExpired] != silent ||
		st.Counts[repermit.StateUnreached] != n-10-silent || st.Counts.Total() != n {
		t.Errorf("counts at the end: %v, %d mailed", st.Counts, len(mailed))
	}
	for _, i := range []int64{50, n - 1} {
		r, err := e.store.Recipient(ctx, c.ID, i)
		if err != nil {
			t.Fatal(err)
		}
		_, wasMailed := mailed[addr(int(i), nil)]
		supp, err := e.store.IsSuppressed(ctx, []string{repermit.AddressHash(addr(int(i), nil))})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case wasMailed && (r.State != repermit.StateExpired || r.Email != "" || !supp[0]):
			t.Errorf("mailed recipient %d: state %s, email %q, suppressed %v; want expired, erased, suppressed", i, r.State, r.Email, supp[0])
		case !wasMailed && (r.State != repermit.StateUnreached || r.Email != addr(int(i), nil) || supp[0]):
			t.Errorf("never mailed recipient %d: state %s, email %q, suppressed %v; want unreached, kept, not suppressed", i, r.State, r.Email, supp[0])
		}
	}
	for i := range int64(n) {
		r, err := e.store.Recipient(ctx, c.ID, i)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := mailed[addr(int(i), nil)]; ok && r.State == repermit.StateUnreached {
			t.Errorf("recipient %d mailed after the expiry found it unreached", i)
		}
	}
	if got := e.counters.ExpiredN.Load(); got != silent {
		t.Errorf("observer counted %d expired, want %d", got, silent)
	}
}

func TestExpiryRunsWhenNoWorkerWasUpAtTheDeadline(t *testing.T) {
	e := newEnv(t, smtpsink.Options{Discard: true})
	start := time.Now()
	c := e.launch(repermit.Campaign{StartAt: start.Add(time.Hour), Deadline: start.Add(200 * time.Millisecond)}, 10, nil)
	time.Sleep(time.Until(c.Deadline)) // no worker is up at the deadline
	e.start(e.config())
	e.waitFor("campaign finished", 10*time.Second, func() bool { return e.status(c.ID) == repermit.StatusFinished })
	if got := e.stats(c.ID).Counts[repermit.StateUnreached]; got != 10 {
		t.Errorf("%d unreached, want 10 (nobody was mailed)", got)
	}
	if e.sink.Count() != 0 {
		t.Errorf("%d mails sent after the deadline", e.sink.Count())
	}
}

func TestScheduleTwiceDoesNotDoubleTasks(t *testing.T) {
	e := newEnv(t, smtpsink.Options{})
	c := e.launch(repermit.Campaign{StartAt: time.Now().Add(time.Hour), Reminders: []time.Duration{time.Minute}}, 1, nil)
	if err := e.sched.Schedule(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	tasks, err := asynq.NewInspectorFromRedisClient(e.r.Client).ListScheduledTasks(e.r.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ti := range tasks {
		ids = append(ids, ti.ID)
	}
	if len(tasks) != 3 {
		t.Errorf("scheduled tasks %v, want feed, one reminder and expire", ids)
	}
}

func TestCampaignRateIsHeldAcrossWorkers(t *testing.T) {
	const n, perSecond = 60, 20
	e := newEnv(t, smtpsink.Options{Discard: true})
	c := e.launch(repermit.Campaign{Rate: repermit.Rate{PerSecond: perSecond}}, n, nil)
	began := time.Now()
	e.start(e.config())
	e.start(e.config())
	e.waitFor("every recipient mailed", 15*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateSent] == n
	})
	elapsed := time.Since(began)
	// A burst of one batch (perSecond/4) goes at once, the rest at the rate.
	if min := time.Duration(float64(n-perSecond/4-1) / perSecond * float64(time.Second)); elapsed < min {
		t.Errorf("%d mails at %d/s took %v, want at least %v", n, perSecond, elapsed, min)
	}
	if e.counters.ThrottledN.Load() == 0 {
		t.Error("nothing was throttled")
	}
}

func TestDomainRateSlowsOnlyThatDomain(t *testing.T) {
	const n = 40
	e := newEnv(t, smtpsink.Options{})
	// 8 recipients at slow.example, limited to 60 a minute: a burst of 5
	// (a twelfth of the limit), then one a second.
	domain := func(i int) string {
		if i%5 == 0 {
			return "slow.example"
		}
		return "fast.example"
	}
	c := e.launch(repermit.Campaign{Rate: repermit.Rate{PerDomainPerMinute: map[string]int{"slow.example": 60}}}, n, domain)
	began := time.Now()
	e.start(e.config())
	count := func(d string) int {
		k := 0
		for _, m := range e.sink.Messages() {
			if strings.HasSuffix(m.To[0], "@"+d) {
				k++
			}
		}
		return k
	}
	e.waitFor("the fast domain mailed", 5*time.Second, func() bool { return count("fast.example") == 32 })
	if got := count("slow.example"); got == 8 {
		t.Errorf("the slow domain was done as fast as the other")
	}
	e.waitFor("every recipient mailed", 15*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateSent] == n
	})
	if elapsed := time.Since(began); elapsed < 2*time.Second {
		t.Errorf("8 mails to a domain limited to 60/min with a burst of 5 took %v, want at least 2s", elapsed)
	}
	if e.counters.ThrottledN.Load() == 0 {
		t.Error("nothing was throttled")
	}
}
