package worker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
)

// mockStore implements Store with one …Fn field per method a test needs,
// in the manner of wtf's mock package; calling a method whose Fn is nil
// panics on the nil embedded Store, so a test states every dependency.
type mockStore struct {
	Store

	CampaignFn        func(ctx context.Context, id string) (*repermit.Campaign, error)
	SetStatusFn       func(ctx context.Context, id string, to repermit.CampaignStatus, from ...repermit.CampaignStatus) error
	ReadForSendFn     func(ctx context.Context, id string, idxs []int64) (repermit.CampaignStatus, []*repermit.Recipient, error)
	ClaimBatchFn      func(ctx context.Context, id string, idxs []int64, step int, now time.Time, lease time.Duration) ([]error, error)
	RenewBatchFn      func(ctx context.Context, id string, idxs []int64, step int, now time.Time, lease time.Duration) ([]error, error)
	ReleaseFn         func(ctx context.Context, id string, idx int64, step int, now time.Time) error
	MarkSentFn        func(ctx context.Context, id string, idx int64, step int, now time.Time) error
	KeepMailWordingFn func(ctx context.Context, id string, w redisstore.MailWording, text []byte) error
	IsSuppressedFn    func(ctx context.Context, hashes []string) ([]bool, error)
	SuppressFn        func(ctx context.Context, r *repermit.Recipient, now time.Time) error
	BounceFn          func(ctx context.Context, r *repermit.Recipient, now time.Time) error
	RecordFeedbackFn  func(ctx context.Context, f redisstore.Feedback) (bool, int64, error)
	PenalizeDomainFn  func(ctx context.Context, domain string, d time.Duration) error
	DomainPenaltiesFn func(ctx context.Context, domains []string) ([]time.Duration, error)
	AllowAtMostFn     func(ctx context.Context, id, scope string, l redisstore.RateLimit, n int) (redisstore.Allowance, error)
}

func (m *mockStore) Campaign(ctx context.Context, id string) (*repermit.Campaign, error) {
	return m.CampaignFn(ctx, id)
}
func (m *mockStore) SetStatus(ctx context.Context, id string, to repermit.CampaignStatus, from ...repermit.CampaignStatus) error {
	return m.SetStatusFn(ctx, id, to, from...)
}
func (m *mockStore) ReadForSend(ctx context.Context, id string, idxs []int64) (repermit.CampaignStatus, []*repermit.Recipient, error) {
	return m.ReadForSendFn(ctx, id, idxs)
}
func (m *mockStore) ClaimBatch(ctx context.Context, id string, idxs []int64, step int, now time.Time, lease time.Duration) ([]error, error) {
	return m.ClaimBatchFn(ctx, id, idxs, step, now, lease)
}
func (m *mockStore) RenewBatch(ctx context.Context, id string, idxs []int64, step int, now time.Time, lease time.Duration) ([]error, error) {
	return m.RenewBatchFn(ctx, id, idxs, step, now, lease)
}
func (m *mockStore) Release(ctx context.Context, id string, idx int64, step int, now time.Time) error {
	return m.ReleaseFn(ctx, id, idx, step, now)
}
func (m *mockStore) MarkSent(ctx context.Context, id string, idx int64, step int, now time.Time) error {
	return m.MarkSentFn(ctx, id, idx, step, now)
}

// KeepMailWording keeps nothing unless a test asks: most tests of the send
// batch are about claims and outcomes, not wordings.
func (m *mockStore) KeepMailWording(ctx context.Context, id string, w redisstore.MailWording, text []byte) error {
	if m.KeepMailWordingFn == nil {
		return nil
	}
	return m.KeepMailWordingFn(ctx, id, w, text)
}
func (m *mockStore) IsSuppressed(ctx context.Context, hashes []string) ([]bool, error) {
	return m.IsSuppressedFn(ctx, hashes)
}
func (m *mockStore) Suppress(ctx context.Context, r *repermit.Recipient, now time.Time) error {
	return m.SuppressFn(ctx, r, now)
}
func (m *mockStore) BounceFrom(ctx context.Context, r *repermit.Recipient, now time.Time, _ string) error {
	return m.BounceFn(ctx, r, now)
}
func (m *mockStore) RecordFeedback(ctx context.Context, f redisstore.Feedback) (bool, int64, error) {
	return m.RecordFeedbackFn(ctx, f)
}
func (m *mockStore) PenalizeDomain(ctx context.Context, domain string, d time.Duration) error {
	return m.PenalizeDomainFn(ctx, domain, d)
}
func (m *mockStore) DomainPenalties(ctx context.Context, domains []string) ([]time.Duration, error) {
	return m.DomainPenaltiesFn(ctx, domains)
}
func (m *mockStore) AllowAtMost(ctx context.Context, id, scope string, l redisstore.RateLimit, n int) (redisstore.Allowance, error) {
	return m.AllowAtMostFn(ctx, id, scope, l, n)
}

// fakeQueue records the tasks the handlers enqueue.
type fakeQueue struct {
	mu    sync.Mutex
	tasks []queued
	err   error // returned by every enqueue when set
}

// queued is one enqueued send task: whom, which step and attempt, when.
type queued struct {
	Indexes []int64
	Attempt int
	Delay   time.Duration
	TaskID  string        // "" for none
	At      time.Time     // ProcessAt, zero for none
	Keep    time.Duration // Retention
}

func (q *fakeQueue) EnqueueContext(_ context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return nil, q.err
	}
	var p sendPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return nil, err
	}
	task := queued{Indexes: p.Indexes, Attempt: p.Attempt}
	for _, o := range opts {
		switch o.Type() {
		case asynq.ProcessInOpt:
			task.Delay = o.Value().(time.Duration)
		case asynq.TaskIDOpt:
			task.TaskID = o.Value().(string)
		case asynq.ProcessAtOpt:
			task.At = o.Value().(time.Time)
		case asynq.RetentionOpt:
			task.Keep = o.Value().(time.Duration)
		}
	}
	q.tasks = append(q.tasks, task)
	return &asynq.TaskInfo{}, nil
}

func (q *fakeQueue) sent() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.tasks...)
}

// fakeSender answers each recipient's mail with the error its address
// maps to (nil: accepted) and counts the mails.
type fakeSender struct {
	mu      sync.Mutex
	answers map[string]error
	mailed  []string
}

func (f *fakeSender) SendWire(_ context.Context, w *mailer.Wire) error {
	to := strings.Trim(w.To[0], "<>")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mailed = append(f.mailed, to)
	return f.answers[to]
}
func (f *fakeSender) BounceDomain() string { return "" }
func (f *fakeSender) Close() error         { return nil }

// fakeClock is a clock tests set.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

var fakeT0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// fakeServer builds a Server on fakes, with a fake clock at fakeT0: no
// Redis, no SMTP, no asynq server.
func fakeServer(t *testing.T, st Store, pool mailSender) (*Server, *fakeQueue, *Counters) {
	t.Helper()
	signer, err := token.NewSigner([][]byte{[]byte("0123456789abcdef0123456789abcdef-test")})
	if err != nil {
		t.Fatal(err)
	}
	counters := &Counters{}
	clock := &fakeClock{t: fakeT0}
	cfg := Config{Signer: signer, Queue: "q", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: counters, Now: clock.Now}
	cfg.fillDefaults()
	q := &fakeQueue{}
	s := &Server{
		cfg: cfg, log: cfg.Logger, store: st, pool: pool, sched: &Scheduler{c: q, queue: cfg.Queue},
		stopping: make(chan struct{}), campaigns: make(map[string]*campaignEntry),
	}
	return s, q, counters
}

// fakeCampaign returns a running campaign entry with the default
// templates, deadline an hour after fakeT0.
func fakeCampaign(t *testing.T, rate repermit.Rate) *campaignEntry {
	t.Helper()
	tpl, err := mailer.LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	return &campaignEntry{tpl: tpl, c: repermit.Campaign{
		ID: "camp", Seq: 1, From: "ACME News <news@acme.example>", Subject: "Do you still want ACME News?",
		ConfirmBaseURL: "https://consent.acme.example", Status: repermit.StatusRunning,
		StartAt: fakeT0, Deadline: fakeT0.Add(time.Hour), Rate: rate,
	}}
}

func recipients(addrs ...string) []*repermit.Recipient {
	out := make([]*repermit.Recipient, len(addrs))
	for i, a := range addrs {
		out[i] = &repermit.Recipient{Campaign: "camp", Index: int64(i), Email: a, State: repermit.StatePending}
	}
	return out
}

// TestRetryDelayAfterRedisWasAway: a task that failed because Redis did
// not answer is retried within seconds at first and never more than about
// 45 s apart, however long the outage; other errors take the SMTP backoff.
func TestRetryDelayAfterRedisWasAway(t *testing.T) {
	s, _, _ := fakeServer(t, nil, nil)
	away := repermit.Errorf(repermit.EUNAVAILABLE, "redis: connection refused")
	tests := []struct {
		name     string
		n        int
		err      error
		min, max time.Duration
	}{
		{"first retry after an outage", 0, away, time.Second, 1500 * time.Millisecond},
		{"fifth", 4, away, 16 * time.Second, 24 * time.Second},
		{"sixth reaches the cap", 5, away, 30 * time.Second, 45 * time.Second},
		{"after an hour of outage", 99, away, 30 * time.Second, 45 * time.Second},
		{"another error takes the SMTP backoff", 10, errors.New("bug"), s.cfg.RetryMax, s.cfg.RetryMax * 3 / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 { // the jitter is random
				if d := s.retryDelay(tt.n, tt.err, nil); d < tt.min || d > tt.max {
					t.Fatalf("retryDelay(%d) = %v, want %v..%v", tt.n, d, tt.min, tt.max)
				}
			}
		})
	}
}
