// Package metrics exposes what the engine does as Prometheus metrics, all
// named repermit_*. The web package serves them on /metrics.
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
)

// WorkerObserver counts the worker's outcomes; it implements
// worker.Observer.
type WorkerObserver struct {
	sent       *prometheus.CounterVec
	failed     *prometheus.CounterVec
	throttled  prometheus.Counter
	suppressed prometheus.Counter
	expired    prometheus.Counter
	latency    prometheus.Histogram
}

// NewWorkerObserver registers the worker's metrics with reg.
func NewWorkerObserver(reg prometheus.Registerer) *WorkerObserver {
	o := &WorkerObserver{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "repermit_mails_sent_total",
			Help: "Mails accepted by the SMTP server, by kind (initial or reminder).",
		}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "repermit_mails_failed_total",
			Help: "Failed send attempts by class: temporary (retried), recipient_rejected (bounced), message_rejected (campaign paused).",
		}, []string{"class"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repermit_mails_throttled_total",
			Help: "Recipients put back for later by the rate limits or a domain penalty.",
		}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repermit_suppressed_at_send_total",
			Help: "Recipients found on the suppression list at send time and not mailed.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repermit_expired_total",
			Help: "Recipients expired at a campaign deadline.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "repermit_smtp_send_seconds",
			Help:    "Duration of one SMTP transaction (MAIL FROM to end of DATA), whatever its outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12), // 0.5 ms … ~30 s
		}),
	}
	// Every series exists from the start, so rate() works before the
	// first event and a dashboard shows 0 rather than nothing.
	for _, kind := range []string{"initial", "reminder"} {
		o.sent.WithLabelValues(kind)
	}
	for _, c := range []mailer.Class{mailer.Temporary, mailer.RecipientRejected, mailer.MessageRejected} {
		o.failed.WithLabelValues(className(c))
	}
	reg.MustRegister(o.sent, o.failed, o.throttled, o.suppressed, o.expired, o.latency)
	return o
}

// Sent counts a mail; step 1 is the initial mail.
func (o *WorkerObserver) Sent(_ string, step int) {
	kind := "initial"
	if step > 1 {
		kind = "reminder"
	}
	o.sent.WithLabelValues(kind).Inc()
}

// Failed counts a failed attempt by its class.
func (o *WorkerObserver) Failed(_ string, class mailer.Class) {
	o.failed.WithLabelValues(className(class)).Inc()
}

func className(c mailer.Class) string {
	switch c {
	case mailer.Temporary:
		return "temporary"
	case mailer.RecipientRejected:
		return "recipient_rejected"
	case mailer.MessageRejected:
		return "message_rejected"
	}
	return "other"
}

// Throttled counts recipients deferred by pacing.
func (o *WorkerObserver) Throttled(_ string, n int) { o.throttled.Add(float64(n)) }

// Suppressed counts a recipient skipped at send time.
func (o *WorkerObserver) Suppressed(string) { o.suppressed.Inc() }

// Expired counts recipients expired at a deadline.
func (o *WorkerObserver) Expired(_ string, n int) { o.expired.Add(float64(n)) }

// SMTPDuration observes one SMTP transaction.
func (o *WorkerObserver) SMTPDuration(d time.Duration) { o.latency.Observe(d.Seconds()) }

// QueueStore reads the engine's asynq queue.
type QueueStore interface {
	Prefix() string
	QueueDepth(queue string) (redisstore.QueueDepth, error)
}

// FeedbackStore reads what the feedback collector reports of every campaign.
type FeedbackStore interface {
	Campaigns(ctx context.Context) ([]string, error)
	Campaign(ctx context.Context, id string) (*repermit.Campaign, error)
	Stats(ctx context.Context, id string) (redisstore.Stats, error)
	Waves(ctx context.Context, id string) (redisstore.WaveState, error)
}

var (
	_ QueueStore    = (*redisstore.Store)(nil)
	_ FeedbackStore = (*redisstore.Store)(nil)
)

// queueCollector reads asynq's queue sizes on each scrape.
type queueCollector struct {
	store QueueStore
	queue string
	depth *prometheus.Desc
}

// RegisterQueue registers repermit_queue_tasks{state}: the tasks in the
// engine's asynq queue by state (pending, scheduled, retry, active…),
// read from Redis at scrape time.
func RegisterQueue(reg prometheus.Registerer, st QueueStore) error {
	return reg.Register(&queueCollector{
		store: st,
		queue: st.Prefix(),
		depth: prometheus.NewDesc("repermit_queue_tasks", "Tasks in the asynq queue by state.", []string{"queue", "state"}, nil),
	})
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	// go-redis' read timeout bounds this call, so a slow Redis delays a
	// scrape by seconds at most.
	info, err := c.store.QueueDepth(c.queue)
	if err != nil {
		// Redis away: report nothing rather than fail the whole scrape.
		return
	}
	for state, n := range map[string]int{
		"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
		"retry": info.Retry, "archived": info.Archived, "completed": info.Completed,
	} {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n), c.queue, state)
	}
}

// feedbackCollector reads the bounce and complaint reports of every
// campaign from Redis on each scrape, so that all workers and web servers
// count alike whichever process a report reached.
type feedbackCollector struct {
	store   FeedbackStore
	timeout time.Duration
	reports *prometheus.Desc
	rate    *prometheus.Desc
	limit   *prometheus.Desc
	backlog *prometheus.Desc
	failed  *prometheus.Desc
	waves   *prometheus.Desc
	stopped *prometheus.Desc
}

// RegisterFeedback registers repermit_feedback_reports{campaign,kind,source}
// (kind bounced, soft or complaint; source smtp, dsn, arf or webhook),
// repermit_complaint_rate{campaign} (complaints per recipient mailed) and
// repermit_complaint_rate_limit (0.003, what Gmail and Yahoo tolerate), for
// an alert rule comparing the two.
func RegisterFeedback(reg prometheus.Registerer, st FeedbackStore) error {
	return reg.Register(&feedbackCollector{
		store:   st,
		timeout: 5 * time.Second,
		reports: prometheus.NewDesc("repermit_feedback_reports", "Bounce and complaint reports by campaign, kind and source.", []string{"campaign", "kind", "source"}, nil),
		rate:    prometheus.NewDesc("repermit_complaint_rate", "Complaint reports per recipient mailed.", []string{"campaign"}, nil),
		limit:   prometheus.NewDesc("repermit_complaint_rate_limit", "The complaint rate Gmail and Yahoo tolerate from bulk senders.", nil, nil),
		backlog: prometheus.NewDesc("repermit_webhook_backlog", "Events (answers, bounces, complaints, expiries, pauses) a campaign's webhook has yet to deliver.", []string{"campaign", "webhook"}, nil),
		failed:  prometheus.NewDesc("repermit_webhook_failures", "Failed (and retried) webhook delivery attempts.", []string{"campaign", "webhook"}, nil),
		waves:   prometheus.NewDesc("repermit_wave_reports", "Bounces, complaints and deferrals about the recipients of each wave of a campaign sent in waves.", []string{"campaign", "wave", "kind"}, nil),
		stopped: prometheus.NewDesc("repermit_waves_stopped", "1 while a campaign is paused because its waves crossed a stop threshold.", []string{"campaign"}, nil),
	})
}

func (c *feedbackCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reports
	ch <- c.rate
	ch <- c.limit
	ch <- c.backlog
	ch <- c.failed
	ch <- c.waves
	ch <- c.stopped
}

func (c *feedbackCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, redisstore.ComplaintRateLimit)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ids, err := c.store.Campaigns(ctx)
	if err != nil {
		return // Redis away: the scrape shows the rest
	}
	for _, id := range ids {
		s, err := c.store.Stats(ctx, id)
		if err != nil {
			continue
		}
		for _, kind := range []string{redisstore.FeedbackHard, redisstore.FeedbackSoft, redisstore.FeedbackComplaint} {
			for src, n := range s.FeedbackBy(kind) {
				ch <- prometheus.MustNewConstMetric(c.reports, prometheus.GaugeValue, float64(n), id, kind, src)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, s.ComplaintRate(), id)
		if camp, err := c.store.Campaign(ctx, id); err == nil {
			for i := range camp.Webhooks {
				hook := strconv.Itoa(i)
				ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(s.WebhookBacklog(i)), id, hook)
				ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(s.Webhooks[i].Failures), id, hook)
			}
			if camp.Waves != nil {
				c.collectWaves(ctx, ch, id)
			}
		}
	}
}

func (c *feedbackCollector) collectWaves(ctx context.Context, ch chan<- prometheus.Metric, id string) {
	ws, err := c.store.Waves(ctx, id)
	if err != nil {
		return
	}
	for k, f := range ws.Figures {
		wave := strconv.Itoa(k)
		ch <- prometheus.MustNewConstMetric(c.waves, prometheus.GaugeValue, float64(f.Bounces), id, wave, "bounces")
		ch <- prometheus.MustNewConstMetric(c.waves, prometheus.GaugeValue, float64(f.Complaints), id, wave, "complaints")
		ch <- prometheus.MustNewConstMetric(c.waves, prometheus.GaugeValue, float64(f.Deferrals), id, wave, "deferrals")
	}
	stopped := 0.0
	if ws.Stop != nil {
		stopped = 1
	}
	ch <- prometheus.MustNewConstMetric(c.stopped, prometheus.GaugeValue, stopped, id)
}
