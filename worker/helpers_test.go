package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
)

// env is one test's engine: Redis, store, SMTP sink, signer, scheduler.
type env struct {
	t        *testing.T
	r        *redistest.Redis
	store    *redisstore.Store
	sink     *smtpsink.Sink
	signer   *token.Signer
	sched    *Scheduler
	counters *Counters
}

func newEnv(t *testing.T, opts smtpsink.Options) *env {
	t.Helper()
	r := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sink, err := smtpsink.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	signer, err := token.NewSigner([][]byte{[]byte("0123456789abcdef0123456789abcdef-test")})
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(r.Client)
	t.Cleanup(func() { client.Close() })
	return &env{
		t: t, r: r, store: redisstore.New(r.Client, r.Prefix), sink: sink, signer: signer,
		sched: NewScheduler(client, r.Prefix), counters: &Counters{},
	}
}

// config returns a worker configuration with the intervals compressed for
// tests.
func (e *env) config() Config {
	smtp, err := mailer.ParseSMTPURL(e.sink.URL())
	if err != nil {
		e.t.Fatal(err)
	}
	return Config{
		Store:         e.store,
		Queue:         e.r.Prefix,
		SMTP:          smtp,
		PoolSize:      8,
		Signer:        e.signer,
		Logger:        slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Observer:      e.counters,
		TickInterval:  200 * time.Millisecond,
		PollInterval:  50 * time.Millisecond,
		SweepInterval: 500 * time.Millisecond,
		StaleAfter:    2 * time.Second,
		PauseRecheck:  300 * time.Millisecond,
		RetryBase:     50 * time.Millisecond,
		RetryMax:      500 * time.Millisecond,
		MaxAttempts:   50,
		DomainPenalty: 200 * time.Millisecond,
	}
}

// start runs a worker server until the test ends.
func (e *env) start(cfg Config) *Server {
	e.t.Helper()
	s, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
	return s
}

// launch imports n recipients r<i>@<domain(i)> and schedules the campaign.
func (e *env) launch(c repermit.Campaign, n int, domain func(i int) string) repermit.Campaign {
	e.t.Helper()
	ctx := context.Background()
	if c.ID == "" {
		c.ID = "camp"
	}
	if c.From == "" {
		c.From = "ACME News <news@acme.example>"
	}
	if c.Subject == "" {
		c.Subject = "Do you still want ACME News?"
	}
	if c.ConfirmBaseURL == "" {
		c.ConfirmBaseURL = "https://consent.acme.example"
	}
	if c.StartAt.IsZero() {
		c.StartAt = time.Now()
	}
	if c.Deadline.IsZero() {
		c.Deadline = c.StartAt.Add(time.Hour)
	}
	if domain == nil {
		domain = func(int) string { return "example.com" }
	}
	imp, err := e.store.BeginImport(ctx, c, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := imp.Add(ctx, addr(i, domain), fmt.Sprintf("Name %d", i), "", nil); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: c.ID, Imported: int64(n)}); err != nil {
		e.t.Fatal(err)
	}
	c = imp.Campaign()
	if err := e.sched.Schedule(ctx, c); err != nil {
		e.t.Fatal(err)
	}
	return c
}

func addr(i int, domain func(int) string) string {
	if domain == nil {
		return fmt.Sprintf("r%d@example.com", i)
	}
	return fmt.Sprintf("r%d@%s", i, domain(i))
}

// waitFor polls cond until it holds or the timeout passes.
func (e *env) waitFor(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) stats(id string) redisstore.Stats {
	e.t.Helper()
	st, err := e.store.Stats(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) status(id string) repermit.CampaignStatus {
	e.t.Helper()
	c, err := e.store.Campaign(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Status
}

// perRecipient counts the sink's accepted mails per address and kind
// (the Message-ID names it).
func (e *env) perRecipient() map[string]int {
	out := make(map[string]int)
	for _, m := range e.sink.Messages() {
		for _, to := range m.To {
			out[to+" "+kindOf(m)]++
		}
	}
	return out
}

// initialMailed is the set of addresses the sink accepted an initial mail
// for.
func (e *env) initialMailed() map[string]bool {
	out := make(map[string]bool)
	for _, m := range e.sink.Messages() {
		if kindOf(m) == "initial" {
			for _, to := range m.To {
				out[to] = true
			}
		}
	}
	return out
}

func kindOf(m smtpsink.Message) string {
	id := m.Header.Get("Message-Id")
	switch {
	case strings.Contains(id, ".initial@"):
		return "initial"
	case strings.Contains(id, ".reminder"):
		return "reminder"
	}
	return "?"
}

func (e *env) assertNoDuplicates() {
	e.t.Helper()
	for k, n := range e.perRecipient() {
		if n != 1 {
			e.t.Errorf("%s: %d mails, want 1", k, n)
		}
	}
}

// parts returns the decoded parts of a multipart/alternative mail by
// media type.
func parts(t *testing.T, data []byte) map[string]string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("read mail: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	out := make(map[string]string)
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		var r io.Reader = p
		switch strings.ToLower(p.Header.Get("Content-Transfer-Encoding")) {
		case "quoted-printable":
			r = quotedprintable.NewReader(p)
		case "base64":
			t.Fatalf("unexpected base64 part")
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("decode part: %v", err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		out[ct] = string(b)
	}
	return out
}

type testWriter struct{ t *testing.T }

var logMu sync.Mutex

func (w testWriter) Write(b []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	if os.Getenv("REPERMIT_TEST_QUIET") == "" {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// scaled returns n, or n/div when the race detector runs on miniredis, so
// the suite stays within its time budget there; runs on a real Redis (CI)
// always use n.
func scaled(n, div int) int {
	if raceEnabled && !redistest.Real() {
		return n / div
	}
	return n
}

// sendTasks returns the ids of the queue's send tasks that may still mail
// someone (pending, active, scheduled or waiting for a retry), and how
// many of them are running or due within the next 100ms.
func (e *env) sendTasks() (ids map[string]bool, busy int) {
	e.t.Helper()
	in := asynq.NewInspectorFromRedisClient(e.r.Client)
	ids = make(map[string]bool)
	soon := time.Now().Add(100 * time.Millisecond)
	lists := []struct {
		list func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
		busy bool
	}{{in.ListActiveTasks, true}, {in.ListPendingTasks, true}, {in.ListScheduledTasks, false}, {in.ListRetryTasks, false}}
	for _, l := range lists {
		ts, err := l.list(e.r.Prefix, asynq.PageSize(100000))
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			e.t.Fatalf("list tasks: %v", err)
		}
		for _, t := range ts {
			if t.Type == TypeSend {
				ids[t.ID] = true
				if l.busy || t.NextProcessAt.Before(soon) {
					busy++
				}
			}
		}
	}
	return ids, busy
}

// tasks returns how many tasks of type typ asynq holds in the lists
// named: "active", "pending", "scheduled", "retry", "archived".
func (e *env) tasks(typ string, lists ...string) int {
	e.t.Helper()
	in := asynq.NewInspectorFromRedisClient(e.r.Client)
	by := map[string]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		"active": in.ListActiveTasks, "pending": in.ListPendingTasks, "scheduled": in.ListScheduledTasks,
		"retry": in.ListRetryTasks, "archived": in.ListArchivedTasks,
	}
	n := 0
	for _, l := range lists {
		ts, err := by[l](e.r.Prefix, asynq.PageSize(100000))
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			e.t.Fatalf("list %s tasks: %v", l, err)
		}
		for _, t := range ts {
			if t.Type == typ {
				n++
			}
		}
	}
	return n
}

// waitSendsDone waits until no send task is running or due: every mail
// the queue had ready, a duplicate included, is in the sink by then. (A
// task scheduled later, e.g. for recipients another worker held, finds
// them mailed when it runs.)
func (e *env) waitSendsDone(timeout time.Duration) {
	e.t.Helper()
	e.waitFor("no send task running or due", timeout, func() bool { _, busy := e.sendTasks(); return busy == 0 })
}

// waitPausedRound waits until no send task is running or due, then until
// every send task that existed then has run again (a paused campaign's
// tasks re-check every PauseRecheck): the paused handlers had their chance
// to mail and the test can look at what they did.
func (e *env) waitPausedRound(timeout time.Duration) {
	e.t.Helper()
	e.waitSendsDone(timeout)
	before, _ := e.sendTasks()
	e.waitFor("every send task run again", timeout, func() bool {
		now, _ := e.sendTasks()
		for id := range before {
			if now[id] {
				return false
			}
		}
		return true
	})
	e.waitSendsDone(timeout)
}
