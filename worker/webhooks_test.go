package worker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/metrics"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/webhook"
)

// crm is a real HTTP receiver on a fixed port that fails its first
// attempts, can be taken down (connection refused) and brought up again,
// and checks every request with the Standard Webhooks reference library.
type crm struct {
	t        *testing.T
	addr     string
	verifier *standardwebhooks.Webhook
	mu       sync.Mutex
	failLeft int
	srv      *http.Server
	accepted []webhook.Event // in arrival order
	ids      map[string]int  // accepted deliveries per webhook-id
	attempts int
	badSig   int
}

func newCRM(t *testing.T, secret string, failFirst int) *crm {
	t.Helper()
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &crm{t: t, addr: ln.Addr().String(), verifier: v, failLeft: failFirst, ids: map[string]int{}}
	c.serve(ln)
	t.Cleanup(c.down)
	return c
}

func (c *crm) serve(ln net.Listener) {
	c.srv = &http.Server{Handler: http.HandlerFunc(c.handle)}
	go c.srv.Serve(ln)
}

func (c *crm) down() {
	c.mu.Lock()
	srv := c.srv
	c.mu.Unlock()
	srv.Close()
}

func (c *crm) up() {
	c.t.Helper()
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.serve(ln)
}

func (c *crm) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts++
	if err := c.verifier.Verify(body, r.Header); err != nil {
		c.badSig++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if c.failLeft > 0 {
		c.failLeft--
		http.Error(w, "not yet", http.StatusInternalServerError)
		return
	}
	var e webhook.Event
	if err := json.Unmarshal(body, &e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get("webhook-id")
	c.ids[id]++
	if c.ids[id] == 1 {
		c.accepted = append(c.accepted, e)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *crm) snapshot() ([]webhook.Event, map[string]int, int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := map[string]int{}
	for k, v := range c.ids {
		ids[k] = v
	}
	return append([]webhook.Event(nil), c.accepted...), ids, c.attempts, c.badSig
}

// TestWebhooksReachACRMThatFailsAndGoesDown: a real HTTP receiver fails
// its first attempts and is down (connection refused) for a while; every
// event still arrives, exactly once by webhook-id, each signature verifies
// with the Standard Webhooks reference implementation, events of one
// recipient arrive in the order they happened, and the address goes out
// only for a recipient still confirmed. Besides the answers, a bounce, a
// complaint and two expiries at the deadline are told, by the keyed
// address hash alone.
func TestWebhooksReachACRMThatFailsAndGoesDown(t *testing.T) {
	e := newEnv(t, smtpsink.Options{})
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(raw)
	hook := newCRM(t, secret, 3)
	start := time.Now()
	c := e.launch(repermit.Campaign{Topics: []string{"yoga", "events"}, StartAt: start, Deadline: start.Add(4 * time.Second),
		Webhooks: []repermit.Webhook{{URL: "http://" + hook.addr + "/consent", Secret: secret}}}, 8, nil)
	cfg := e.config()
	cfg.WebhookInterval = 100 * time.Millisecond
	cfg.WebhookRetryBase = 50 * time.Millisecond
	cfg.WebhookRetryMax = 300 * time.Millisecond
	e.start(cfg)
	e.start(cfg) // two workers: still one delivery at a time per webhook
	e.waitFor("the initial mails", 10*time.Second, func() bool { return e.sink.Count() == 8 })

	ctx := context.Background()
	answer := func(i int64, st repermit.State, topics ...string) {
		t.Helper()
		if _, err := e.store.Record(ctx, redisstore.Answer{Campaign: c.ID, Index: i, State: st, Topics: topics, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	answer(0, repermit.StateConfirmed, "yoga", "events")
	answer(1, repermit.StateConfirmed, "yoga")
	answer(2, repermit.StateDeclined)
	e.waitFor("the first events past the failing attempts", 10*time.Second, func() bool {
		acc, _, _, _ := hook.snapshot()
		return len(acc) >= 1
	})
	hook.down()
	answer(0, repermit.StateConfirmed, "yoga") // a change of topics
	answer(3, repermit.StateConfirmed, "events")
	answer(3, repermit.StateDeclined)
	answer(0, repermit.StateUnsubscribed)
	p := &bounces.Processor{Store: e.store, Signer: e.signer}
	if out, err := p.Apply(ctx, bounces.Hard, "webhook", c.ID, 4, "postmark:bounce-4"); err != nil || out.Changed != repermit.StateBounced {
		t.Fatalf("bounce of recipient 4: %+v, %v", out, err)
	}
	if out, err := p.Apply(ctx, bounces.Complaint, "arf", c.ID, 5, "arf-5"); err != nil || out.Changed != repermit.StateUnsubscribed {
		t.Fatalf("complaint of recipient 5: %+v, %v", out, err)
	}
	// The same report again is no new complaint.
	if out, err := p.Apply(ctx, bounces.Complaint, "arf", c.ID, 5, "arf-5"); err != nil || out.First {
		t.Fatalf("complaint of recipient 5 again: %+v, %v", out, err)
	}
	e.waitFor("6 and 7 expired at the deadline", 15*time.Second, func() bool {
		return e.stats(c.ID).Counts[repermit.StateExpired] == 2
	})
	e.waitFor("several retries against the closed port", 10*time.Second, func() bool {
		st, err := e.store.Webhook(ctx, c.ID, 0)
		return err == nil && st.Failures >= 3+2 // the CRM's 3, then 2 while it is down
	})
	_, _, before, _ := hook.snapshot()
	if st, err := e.store.Stats(ctx, c.ID); err != nil || st.WebhookBacklog(0) == 0 || st.Webhooks[0].Failures < 4 {
		t.Errorf("while the CRM is down: backlog %d, failures %d (%v); want both shown", st.WebhookBacklog(0), st.Webhooks[0].Failures, err)
	}
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterFeedback(reg, e.store); err != nil {
		t.Fatal(err)
	}
	if n := gauge(t, reg, "repermit_webhook_backlog"); n == 0 {
		t.Error("/metrics shows no webhook backlog while the CRM is down")
	}
	hook.up()
	const events = 12
	e.waitFor("all events", 20*time.Second, func() bool {
		acc, _, _, _ := hook.snapshot()
		return len(acc) == events
	})
	// A repeat could only come from a task whose position is behind:
	// wait until the positions cover all events and no delivery task is
	// left.
	e.waitFor("every event recorded as delivered, no delivery task left", 10*time.Second, func() bool {
		st, err := e.store.Webhook(ctx, c.ID, 0)
		return err == nil && st.Delivered+st.EventsDelivered == events && e.tasks(TypeWebhooks, "active", "pending", "scheduled", "retry") == 0
	})
	acc, ids, attempts, bad := hook.snapshot()
	if bad != 0 {
		t.Errorf("%d requests failed the reference library's signature check", bad)
	}
	if attempts < events+3 || before == attempts {
		t.Errorf("%d attempts (%d before the CRM came back): want the 3 failures and retries after the outage", attempts, before)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("event %s accepted %d times", id, n)
		}
	}
	if len(ids) != events {
		t.Errorf("%d distinct event ids, want %d", len(ids), events)
	}
	key, err := e.store.SubjectKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64][]string{}
	for _, ev := range acc {
		if ev.Data.Recipient == nil {
			t.Errorf("event %+v names no recipient", ev)
			continue
		}
		i := *ev.Data.Recipient
		seen[i] = append(seen[i], ev.Type)
		if want, _ := consentlog.Subject(key, addr(int(i), nil)); ev.Data.Subject != want {
			t.Errorf("recipient %d's %s event: subject %q, want the keyed hash of its address %q", i, ev.Type, ev.Data.Subject, want)
		}
		switch {
		case i == 1 && ev.Data.Email != "r1@example.com":
			t.Errorf("confirmed recipient 1's event lacks the address: %+v", ev)
		case i == 0 && ev.Data.Record == 1:
			// Delivered while recipient 0 was still confirmed: with address.
			if ev.Data.Email != "r0@example.com" {
				t.Errorf("recipient 0's first confirmation, delivered while confirmed, lacks the address: %+v", ev)
			}
		case i != 1 && ev.Data.Email != "":
			t.Errorf("recipient %d, no longer confirmed, sent with the address %q", i, ev.Data.Email)
		}
		if (ev.Type == webhook.RecipientBounced || ev.Type == webhook.RecipientComplained) && ev.Data.Source == "" {
			t.Errorf("%s event without its source: %+v", ev.Type, ev)
		}
	}
	want := map[int64][]string{
		0: {webhook.ConsentConfirmed, webhook.ConsentTopicsChanged, webhook.ConsentUnsubscribed},
		1: {webhook.ConsentConfirmed},
		2: {webhook.ConsentDeclined},
		3: {webhook.ConsentConfirmed, webhook.ConsentDeclined},
		4: {webhook.RecipientBounced},
		5: {webhook.ConsentUnsubscribed, webhook.RecipientComplained},
		6: {webhook.RecipientExpired},
		7: {webhook.RecipientExpired},
	}
	for i, types := range want {
		if !slices.Equal(seen[i], types) {
			t.Errorf("recipient %d's events in arrival order %v, want %v", i, seen[i], types)
		}
	}
	if n := gauge(t, reg, "repermit_webhook_backlog"); n != 0 {
		t.Errorf("/metrics shows a webhook backlog of %v after every event arrived", n)
	}
	st, err := e.store.Webhook(ctx, c.ID, 0)
	if err != nil || st.Delivered+st.EventsDelivered != events || st.Failures < 3 {
		t.Errorf("delivery state %+v, %v; want %d delivered, the failures counted", st, err, events)
	}
}

// gauge returns the sum of a metric's values in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}
