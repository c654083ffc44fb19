package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/repermit/repermit/demo"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redistest"
)

// crmEvent is a webhook body as a CRM reads it, decoded with no help
// from repermit's own types.
type crmEvent struct {
	ID        string    `json:"-"`
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		Campaign  string `json:"campaign"`
		Recipient *int64 `json:"recipient"`
		Subject   string `json:"subject"`
		Email     string `json:"email"`
		Source    string `json:"source"`
		Pause     *struct {
			Wave     int    `json:"wave"`
			NextWave int    `json:"next_wave"`
			Reason   string `json:"reason"`
			Crossed  []struct {
				Scope      string `json:"scope"`
				Kind       string `json:"kind"`
				Count      int64  `json:"count"`
				Recipients int64  `json:"recipients"`
			} `json:"crossed"`
		} `json:"pause"`
	} `json:"data"`
}

// crmServer is a CRM's webhook receiver: an httptest server on a port of
// its own that refuses its first attempts with 500, can be taken down
// (connection refused) and brought up again on the same address, and
// checks every request with the Standard Webhooks reference library.
type crmServer struct {
	t        *testing.T
	verifier *standardwebhooks.Webhook
	addr     string
	mu       sync.Mutex
	srv      *httptest.Server
	failLeft int
	attempts int
	badSig   int
	perID    map[string]int // requests answered 2xx, per webhook-id
	events   []crmEvent     // first acceptance of each id, in arrival order
}

func newCRMServer(t *testing.T, secret string, failFirst int) *crmServer {
	t.Helper()
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	c := &crmServer{t: t, verifier: v, failLeft: failFirst, perID: map[string]int{}}
	c.up()
	t.Cleanup(c.down)
	return c
}

func (c *crmServer) up() {
	c.t.Helper()
	addr := c.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatalf("CRM listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(c.handle))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	c.mu.Lock()
	c.srv, c.addr = srv, ln.Addr().String()
	c.mu.Unlock()
}

func (c *crmServer) down() {
	c.mu.Lock()
	srv := c.srv
	c.srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (c *crmServer) url() string { return "http://" + c.addr + "/hooks/consent" }

func (c *crmServer) handle(w http.ResponseWriter, r *http.Request) {
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
	var e crmEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.ID = r.Header.Get("webhook-id")
	c.perID[e.ID]++
	if c.perID[e.ID] == 1 {
		c.events = append(c.events, e)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *crmServer) snapshot() (events []crmEvent, perID map[string]int, attempts, badSig int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	perID = make(map[string]int, len(c.perID))
	for k, v := range c.perID {
		perID[k] = v
	}
	return slices.Clone(c.events), perID, c.attempts, c.badSig
}

// newWebhookSecret returns a fresh "whsec_" secret.
func newWebhookSecret(t *testing.T) string {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(raw)
}

// webhookStatus is the webhooks part of `status --json`.
type webhookStatus struct {
	Webhooks []struct {
		Delivered int64 `json:"delivered"`
		Backlog   int64 `json:"backlog"`
		Failures  int64 `json:"failures"`
	} `json:"webhooks"`
}

func (w *world) webhookStatus(id string) webhookStatus {
	w.t.Helper()
	var s webhookStatus
	if err := json.Unmarshal([]byte(w.run("status", id, "--json")), &s); err != nil || len(s.Webhooks) != 1 {
		w.t.Fatalf("status --json webhooks: %+v, %v", s, err)
	}
	return s
}

// postmark posts one Postmark event (authenticated with the world's
// REPERMIT_HOOK_POSTMARK) about the mail whose Postmark metadata header
// named messageID, as Postmark would.
func (w *world) postmark(user, pass string, event map[string]any) {
	w.t.Helper()
	body, _ := json.Marshal(event)
	req, err := http.NewRequest(http.MethodPost, w.baseURL()+"/hooks/postmark", bytes.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		w.t.Fatalf("POST /hooks/postmark %v: %s", event, resp.Status)
	}
}

// TestWebhooksReachACRMThatFailsAndIsDown runs a campaign with a webhook
// through separate worker and web processes, a real Redis and Mailpit.
// The CRM's receiver refuses its first three requests, then is down
// (connection refused) while recipients answer through the links of
// their mails, a Postmark hard bounce and spam complaint arrive at
// /hooks/postmark, and the deadline expires the silent. Once it is back,
// every event arrives exactly once by webhook-id, every signature
// verifies with the Standard Webhooks reference library, each
// recipient's events come in the order they happened, an erased
// recipient is named by the same keyed hash in each of its events and
// never by address, and status shows the backlog during the outage and
// none after.
func TestWebhooksReachACRMThatFailsAndIsDown(t *testing.T) {
	needReal(t)
	t.Parallel()
	r := redistest.New(t)
	mp := startMailpit(t)
	w := newWorld(t, r.URL, r.Prefix, mp.SMTPURL())
	const pmUser, pmPass = "pm-user", "pm-password-0123456789"
	w.extraEnv = []string{
		"REPERMIT_HOOK_POSTMARK=" + pmUser + ":" + pmPass,
		"REPERMIT_WEBHOOK_INTERVAL=200ms",
		"REPERMIT_WEBHOOK_RETRY=200ms",
		"REPERMIT_WEBHOOK_RETRY_MAX=2s",
	}
	secret := newWebhookSecret(t)
	crm := newCRMServer(t, secret, 3)
	w.startWeb()
	w.start("worker", "worker")

	const id = "e2e-hooks"
	const n = 8
	path := w.writeCampaign(campaignSpec{
		ID: id, N: n, Deadline: "30s", Topics: []string{"news", "events"},
		Extra: fmt.Sprintf("webhooks:\n  - url: %s\n    secret: %q\n", crm.url(), secret),
	})
	w.launch(path)
	mp.WaitCount(n, 30*time.Second)
	box := mailbox(t, mp)
	first := func(i int) demo.Links { return box[addr(i, 0)][0] }
	messageID := map[string]string{}
	for _, s := range mp.Messages() {
		for k, v := range mp.Headers(s.ID) {
			if strings.EqualFold(k, mailer.PostmarkMetadataHeader) && len(v) == 1 && len(s.To) == 1 {
				messageID[s.To[0].Address] = v[0]
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := demo.NewBrowser()
	do := func(what string, p demo.Page, err error) {
		t.Helper()
		if err != nil || p.Status != http.StatusOK {
			t.Fatalf("%s: status %d, %v", what, p.Status, err)
		}
	}
	p, err := b.Answer(ctx, first(0).Yes, "confirm", []string{"news"})
	do("confirm 0", p, err)
	p, err = b.Answer(ctx, first(1).Yes, "confirm", nil)
	do("confirm 1", p, err)
	p, err = b.Answer(ctx, first(2).No, "decline", nil)
	do("decline 2", p, err)
	waitUntil(t, 20*time.Second, "the CRM accepted a first event past its three refusals", func() bool {
		evs, _, _, _ := crm.snapshot()
		return len(evs) >= 1
	})

	crm.down()
	p, err = b.Answer(ctx, first(0).Yes, "confirm", []string{"news", "events"})
	do("0 changes topics", p, err)
	p, err = b.Answer(ctx, first(3).Yes, "confirm", nil)
	do("confirm 3", p, err)
	p, err = b.Unsubscribe(ctx, first(3).Unsubscribe)
	do("unsubscribe 3", p, err)
	w.postmark(pmUser, pmPass, map[string]any{"RecordType": "Bounce", "ID": 4001, "Type": "HardBounce",
		"Metadata": map[string]string{"repermit-id": messageID[addr(4, 0)]}})
	w.postmark(pmUser, pmPass, map[string]any{"RecordType": "SpamComplaint", "ID": 5001, "Type": "SpamComplaint",
		"Metadata": map[string]string{"repermit-id": messageID[addr(5, 0)]}})
	// Postmark retries a webhook it thinks failed: the same event again.
	w.postmark(pmUser, pmPass, map[string]any{"RecordType": "SpamComplaint", "ID": 5001, "Type": "SpamComplaint",
		"Metadata": map[string]string{"repermit-id": messageID[addr(5, 0)]}})
	w.waitStatus(id, 60*time.Second, "6 and 7 expired at the deadline", func(s status) bool { return s.Counts["expired"] == 2 })
	time.Sleep(time.Second) // retries hit the closed port
	during := w.webhookStatus(id).Webhooks[0]
	_, _, attemptsDown, _ := crm.snapshot()
	if during.Backlog == 0 || during.Failures < 4 {
		t.Errorf("status while the CRM is down: %+v; want the backlog and the failed attempts shown", during)
	}

	crm.up()
	const events = 11
	waitUntil(t, 30*time.Second, fmt.Sprintf("the CRM has all %d events", events), func() bool {
		evs, _, _, _ := crm.snapshot()
		return len(evs) >= events
	})
	time.Sleep(time.Second) // room for a stray repeat to show
	evs, perID, attempts, bad := crm.snapshot()
	if bad != 0 {
		t.Errorf("%d requests failed the Standard Webhooks reference library's signature check", bad)
	}
	if attempts == attemptsDown {
		t.Errorf("no attempt after the CRM came back")
	}
	if len(perID) != events || len(evs) != events {
		t.Errorf("%d distinct webhook-ids, %d events; want %d", len(perID), len(evs), events)
	}
	for id, k := range perID {
		if k != 1 {
			t.Errorf("webhook-id %s accepted %d times, want once", id, k)
		}
	}
	got := map[int64][]string{}
	subject := map[int64]string{}
	for _, e := range evs {
		if e.Data.Recipient == nil || e.Data.Campaign != id {
			t.Errorf("event %s %s: campaign %q, recipient %v", e.ID, e.Type, e.Data.Campaign, e.Data.Recipient)
			continue
		}
		i := *e.Data.Recipient
		got[i] = append(got[i], e.Type)
		if e.Data.Subject == "" {
			t.Errorf("recipient %d's %s has no subject", i, e.Type)
		}
		if s, ok := subject[i]; ok && s != e.Data.Subject {
			t.Errorf("recipient %d named by two subjects: %s and %s", i, s, e.Data.Subject)
		}
		subject[i] = e.Data.Subject
		stillConfirmed := i == 0 || i == 1
		if stillConfirmed && e.Data.Email != addr(int(i), 0) || !stillConfirmed && e.Data.Email != "" {
			t.Errorf("recipient %d's %s carries the address %q", i, e.Type, e.Data.Email)
		}
		if (e.Type == "recipient.bounced" || e.Type == "recipient.complained") && e.Data.Source != "webhook" {
			t.Errorf("recipient %d's %s: source %q, want webhook", i, e.Type, e.Data.Source)
		}
	}
	want := map[int64][]string{
		0: {"consent.confirmed", "consent.topics_changed"},
		1: {"consent.confirmed"},
		2: {"consent.declined"},
		3: {"consent.confirmed", "consent.unsubscribed"},
		4: {"recipient.bounced"},
		5: {"consent.unsubscribed", "recipient.complained"},
		6: {"recipient.expired"},
		7: {"recipient.expired"},
	}
	for i, types := range want {
		if !slices.Equal(got[i], types) {
			t.Errorf("recipient %d's events in arrival order %v, want %v", i, got[i], types)
		}
	}
	if after := w.webhookStatus(id).Webhooks[0]; after.Backlog != 0 || after.Delivered != events {
		t.Errorf("status after the CRM came back: %+v; want %d delivered, none waiting", after, events)
	}
}
