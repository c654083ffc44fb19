package worker

import (
	"context"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
)

// The worker's dependencies, declared where they are used, as small as the
// handlers need them. *redisstore.Store, *mailer.Pool and *asynq.Client
// implement them in production; the package's tests hand the handlers
// fakes (fake_test.go) to table-test pacing, the send batch and the
// re-queue decisions in milliseconds, without Redis or SMTP.

// Store is the system of record as the handlers use it.
type Store interface {
	campaignReader
	sendStore
	pacingStore
	chainStore
	expiryStore
}

// campaignReader reads campaigns.
type campaignReader interface {
	Campaign(ctx context.Context, id string) (*repermit.Campaign, error)
	Campaigns(ctx context.Context) ([]string, error)
	Imported(ctx context.Context, id string) (int64, error)
	SetStatus(ctx context.Context, id string, to repermit.CampaignStatus, from ...repermit.CampaignStatus) error
}

// sendStore is what a send task changes: claims, their renewal and
// release, and the outcome of each mail.
type sendStore interface {
	ReadForSend(ctx context.Context, id string, idxs []int64) (repermit.CampaignStatus, []*repermit.Recipient, error)
	ClaimBatch(ctx context.Context, id string, idxs []int64, step int, now time.Time, lease time.Duration) ([]error, error)
	RenewBatch(ctx context.Context, id string, idxs []int64, step int, now time.Time, lease time.Duration) ([]error, error)
	Release(ctx context.Context, id string, idx int64, step int, now time.Time) error
	MarkSent(ctx context.Context, id string, idx int64, step int, now time.Time) error
	KeepMailWording(ctx context.Context, id string, w redisstore.MailWording, text []byte) error
	IsSuppressed(ctx context.Context, hashes []string) ([]bool, error)
	Suppress(ctx context.Context, r *repermit.Recipient, now time.Time) error
	BounceFrom(ctx context.Context, r *repermit.Recipient, now time.Time, source string) error
	RecordFeedback(ctx context.Context, f redisstore.Feedback) (first bool, soft int64, err error)
	PenalizeDomain(ctx context.Context, domain string, d time.Duration) error
}

// pacingStore holds the limiters shared by every worker.
type pacingStore interface {
	DomainPenalties(ctx context.Context, domains []string) ([]time.Duration, error)
	AllowAtMost(ctx context.Context, id, scope string, l redisstore.RateLimit, n int) (redisstore.Allowance, error)
}

// chainStore keeps the feed and reminder chains' cursors and heartbeats,
// and the queue depth the feeder holds back on.
type chainStore interface {
	Cursor(ctx context.Context, id, name string) (int64, error)
	AdvanceCursor(ctx context.Context, id, name string, from, to int64) (bool, error)
	SetBeat(ctx context.Context, id, name string, now time.Time) error
	Beat(ctx context.Context, id, name string) (time.Time, error)
	QueueDepth(queue string) (redisstore.QueueDepth, error)
	Unmailed(ctx context.Context, id string, from, to, limit int64, step int, now time.Time) ([]int64, int64, error)
	waveStore
}

// waveStore keeps the state of a campaign sent in waves.
type waveStore interface {
	Waves(ctx context.Context, id string) (redisstore.WaveState, error)
	MarkWaveFed(ctx context.Context, id string, k int, at time.Time) error
	StopWaves(ctx context.Context, id string, st redisstore.WaveStop) (bool, error)
}

// expiryStore ends a campaign at its deadline and after its retention.
type expiryStore interface {
	Bucket(ctx context.Context, id string, b int64) ([]*repermit.Recipient, error)
	ExpireBucket(ctx context.Context, id string, b int64, now time.Time) (expired, unreached int, err error)
	DrainSuppression(ctx context.Context, id string) error
	PurgeRecipients(ctx context.Context, id string) error
}

// mailSender sends one message over a pooled SMTP connection.
type mailSender interface {
	SendWire(ctx context.Context, w *mailer.Wire) error
	BounceDomain() string
	Close() error
}

// enqueuer adds tasks to the queue.
type enqueuer interface {
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

var (
	_ Store    = (*redisstore.Store)(nil)
	_ enqueuer = (*asynq.Client)(nil)
)
