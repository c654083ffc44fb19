// Package worker is the sending engine: asynq task handlers that feed a
// launched campaign's recipients into send tasks at the campaign's rate,
// mail them, send the reminders and expire the silent at the deadline.
//
// "Mailed once" rests on the recipient state in the store, not on asynq:
// every mail is claimed there (Store.ClaimBatch) before the SMTP step and marked
// sent right after it, so duplicate task deliveries, retries and several
// workers sharing one Redis never send a step twice. The one window left is
// documented at sendOne.
//
// Task chains. Feeding and each reminder walk the recipients with a cursor
// in the store, one tick a TickInterval, each tick enqueuing a bounded batch
// of send tasks and then its successor. A tick carries the cursor value it
// expects ("From") and only the tick that finds the cursor there may advance
// it, so two chains (after a retry or a repair) can never feed twice; the
// one that loses the compare-and-set ends. A sweep, run once per
// SweepInterval by whichever worker gets to it, re-arms chains whose
// heartbeat went stale and re-schedules campaign tasks that went missing.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/mod/sumdb/note"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/ledgerio"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
)

// Config configures a Server. Store, Signer and one of Pool or SMTP are
// required; every other zero value means the documented default.
type Config struct {
	// Store holds campaigns and recipients.
	Store *redisstore.Store
	// Queue is the asynq queue of every task; default Store.Prefix(), which
	// is what launch's Scheduler uses too.
	Queue string
	// Concurrency is how many tasks run at once; default four times the
	// SMTP pool size, so that handlers waiting on Redis round trips (a
	// claim, a mark-sent per mail) leave no connection idle.
	Concurrency int

	// Pool sends the mail. When nil, New builds one from SMTP with
	// PoolSize connections and Run closes it.
	Pool *mailer.Pool
	// SMTP is the server to send through when Pool is nil.
	SMTP mailer.Config
	// PoolSize is the number of SMTP connections of a pool New builds;
	// default 16.
	PoolSize int
	// SMTPTimeout bounds one SMTP transaction; it sizes the shutdown grace
	// period. Default SMTP.Timeout, or mailer.DefaultTimeout.
	SMTPTimeout time.Duration
	// ClaimLease is how long a claim on a recipient's mail holds without
	// word from its worker. A live worker renews its claims every quarter
	// lease, however slow the SMTP server; a killed worker's claims run out
	// within one lease, and the sweep's reconcile re-feeds its recipients.
	// Default 20s.
	ClaimLease time.Duration

	// Signer signs the confirm and unsubscribe links.
	Signer *token.Signer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Observer is told about every outcome; default none.
	Observer Observer
	// Now is the clock; default time.Now. asynq keeps its own real clock,
	// so tests compress durations rather than fake time.
	Now func() time.Time

	// BatchSize is the most recipients one send task carries; default 32.
	BatchSize int
	// TickInterval is how often a feed or reminder chain enqueues the next
	// batch and, while a campaign is paused, how soon it notices a resume;
	// default 1s.
	TickInterval time.Duration
	// PollInterval is how often asynq looks for due scheduled tasks and,
	// when idle, for new ones; default 250ms (asynq's own defaults of 5s and
	// 1s would make pacing lumpy).
	PollInterval time.Duration
	// SweepInterval is how often some worker checks every campaign for
	// missing tasks, stalled chains and recipients no task will mail (see
	// reconcile); default 15s. With asynq's 30 s task lease it bounds the
	// take-over of a killed worker's recipients: 30 s + SweepInterval.
	SweepInterval time.Duration
	// StaleAfter is how long a chain may go without a tick before the sweep
	// re-arms it; default max(10 TickIntervals, 30s).
	StaleAfter time.Duration
	// PauseRecheck is how long a send task of a paused campaign waits before
	// it looks again; default 2s.
	PauseRecheck time.Duration
	// RetryBase is the first delay after a temporary SMTP failure; each
	// further failure of the same recipient doubles it, plus up to 50%
	// jitter, up to RetryMax. Defaults 30s and 1h.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxAttempts is how many temporary failures of a recipient pass before
	// a warning is logged; it is still retried, RetryMax apart, until the
	// deadline. Default 12.
	MaxAttempts int
	// DomainPenalty is how long mail to a domain is held back after its
	// server answered 421, asked for less (4.7.x), or refused
	// DomainTempFailures mails of one task temporarily; default 1m and 3.
	DomainPenalty      time.Duration
	DomainTempFailures int
	// UnlimitedBacklog is, for a campaign without a rate, how many
	// recipients the feeder keeps queued ahead of the workers; default
	// 32768.
	UnlimitedBacklog int
	// ExpireConcurrency is how many buckets the expiry handles at once;
	// default 8.
	ExpireConcurrency int

	// BounceMailbox, when set, is polled for DSNs and ARF complaints once
	// per BounceInterval (default 1m) by one of the workers.
	// SoftBounceLimit is how many of a recipient's mails must soft-bounce
	// to make it bounced; default bounces.DefaultSoftLimit.
	BounceMailbox   *bounces.MailboxConfig
	BounceInterval  time.Duration
	SoftBounceLimit int

	// LedgerSigner, when set, signs a checkpoint of each campaign's consent
	// log that grew, at most once per CheckpointInterval (default 1m), and
	// one at the deadline; Witness, when set, receives each of them.
	LedgerSigner       note.Signer
	Witness            *ledgerio.Witness
	CheckpointInterval time.Duration
	// WebhookInterval is how often some worker offers the delivery of
	// waiting events to each campaign's webhooks; default 5s.
	// WebhookRetryBase is the wait after a webhook's receiver failed; it
	// doubles with each further failure in a row, plus up to 50% jitter,
	// up to WebhookRetryMax. Defaults 5s and 10m: a receiver back from an
	// hour's outage gets its events within ten minutes.
	WebhookInterval  time.Duration
	WebhookRetryBase time.Duration
	WebhookRetryMax  time.Duration
}

func (cfg *Config) setDefaults() error {
	if cfg.Store == nil {
		return errors.New("worker: Config.Store is required")
	}
	if cfg.Signer == nil {
		return errors.New("worker: Config.Signer is required")
	}
	if cfg.Queue == "" {
		cfg.Queue = cfg.Store.Prefix()
	}
	cfg.fillDefaults()
	return nil
}

// fillDefaults gives every zero setting its documented default.
func (cfg *Config) fillDefaults() {
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 16
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4 * cfg.PoolSize
	}
	if cfg.SMTPTimeout <= 0 {
		cfg.SMTPTimeout = cfg.SMTP.Timeout
		if cfg.SMTPTimeout <= 0 {
			cfg.SMTPTimeout = mailer.DefaultTimeout
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// SMTP replies and go-mail's errors quote addresses; none may reach a
	// log line.
	cfg.Logger = newScrubLogger(cfg.Logger)
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	setDefault(&cfg.BatchSize, 32)
	setDefault(&cfg.TickInterval, time.Second)
	setDefault(&cfg.PollInterval, 250*time.Millisecond)
	setDefault(&cfg.SweepInterval, 15*time.Second)
	setDefault(&cfg.ClaimLease, 20*time.Second)
	setDefault(&cfg.BounceInterval, time.Minute)
	setDefault(&cfg.CheckpointInterval, time.Minute)
	setDefault(&cfg.WebhookInterval, 5*time.Second)
	setDefault(&cfg.WebhookRetryBase, 5*time.Second)
	setDefault(&cfg.WebhookRetryMax, 10*time.Minute)
	setDefault(&cfg.StaleAfter, max(10*cfg.TickInterval, 30*time.Second))
	setDefault(&cfg.PauseRecheck, 2*time.Second)
	setDefault(&cfg.RetryBase, 30*time.Second)
	setDefault(&cfg.RetryMax, time.Hour)
	setDefault(&cfg.MaxAttempts, 12)
	setDefault(&cfg.DomainPenalty, time.Minute)
	setDefault(&cfg.DomainTempFailures, 3)
	setDefault(&cfg.UnlimitedBacklog, 32768)
	setDefault(&cfg.ExpireConcurrency, 8)
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Server runs the task handlers. Several servers, in one process or on
// several machines, may share one Redis and queue.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    Store
	sched    *Scheduler
	client   *asynq.Client
	inspect  *asynq.Inspector // lists queued tasks (reconcile)
	pool     mailSender
	ownsPool bool
	srv      *asynq.Server
	mailbox  *bounces.Mailbox // nil without a bounce mailbox

	// reconcileWindow is how many buckets (of 128 recipients) each of a
	// reconcile pass's two windows reads: about 0.35 s of Redis for 1024
	// on the development machine. A field, not a constant, so that a test
	// can reach a list's far end in a few passes.
	reconcileWindow int64

	// stopping is closed when Run's context ends: handlers finish the mail
	// in flight and hand the rest of their batch back to the queue.
	stopping chan struct{}
	stopOnce sync.Once

	mu        sync.Mutex
	campaigns map[string]*campaignEntry
}

// New builds a server; Run starts it.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "worker"),
		store:     cfg.Store,
		client:    cfg.Store.Enqueuer(),
		inspect:   cfg.Store.QueueInspector(),
		stopping:  make(chan struct{}),
		campaigns: make(map[string]*campaignEntry),

		reconcileWindow: 1024,
	}
	s.sched = NewScheduler(s.client, cfg.Queue)
	if cfg.BounceMailbox != nil {
		s.mailbox = &bounces.Mailbox{
			Config: *cfg.BounceMailbox,
			Processor: &bounces.Processor{
				Store: cfg.Store, Signer: cfg.Signer, SoftLimit: cfg.SoftBounceLimit, Now: cfg.Now,
			},
			Logger: cfg.Logger.With("component", "bounces"),
		}
	}
	if cfg.Pool != nil {
		s.pool = cfg.Pool
	} else {
		if err := cfg.SMTP.Validate(); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		s.pool = mailer.NewPool(cfg.SMTP, cfg.PoolSize)
		s.ownsPool = true
	}
	s.srv = cfg.Store.QueueServer(asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   map[string]int{cfg.Queue: 1},
		TaskCheckInterval:        cfg.PollInterval,
		DelayedTaskCheckInterval: cfg.PollInterval,
		RetryDelayFunc:           s.retryDelay,
		// A mail in flight when shutdown begins gets the whole SMTP
		// timeout, plus time to record it; cutting it short would leave
		// an accepted mail unrecorded, the one way to send it twice.
		ShutdownTimeout: cfg.SMTPTimeout + 10*time.Second,
		Logger:          asynqLogger{cfg.Logger.With("component", "asynq")},
		LogLevel:        asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			s.log.Warn("task failed", "type", t.Type(), "err", err)
		}),
	})
	return s, nil
}

// Mux returns the handlers by task type, for callers that assemble their
// own asynq server.
func (s *Server) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(scrubErrors)
	mux.HandleFunc(TypeFeed, s.handleFeed)
	mux.HandleFunc(TypeRemind, s.handleRemind)
	mux.HandleFunc(TypeSend, s.handleSend)
	mux.HandleFunc(TypeExpire, s.handleExpire)
	mux.HandleFunc(TypeSweep, s.handleSweep)
	mux.HandleFunc(TypePurge, s.handlePurge)
	mux.HandleFunc(TypeBounces, s.handleBounces)
	mux.HandleFunc(TypeCheckpoint, s.handleCheckpoint)
	mux.HandleFunc(TypeWebhooks, s.handleWebhooks)
	return mux
}

// Scheduler returns the scheduler the server enqueues with.
func (s *Server) Scheduler() *Scheduler { return s.sched }

// Run processes tasks until ctx ends, then shuts down gracefully: mails in
// flight finish and are recorded, queued work stays in Redis for the next
// worker.
func (s *Server) Run(ctx context.Context) error {
	if err := s.srv.Start(s.Mux()); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.sweepLoop(ctx)
	}()
	if s.mailbox != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.bounceLoop(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.webhookLoop(ctx)
	}()
	if s.cfg.LedgerSigner != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.checkpointLoop(ctx)
		}()
	}
	<-ctx.Done()
	s.stopOnce.Do(func() { close(s.stopping) })
	s.srv.Shutdown()
	wg.Wait()
	if s.ownsPool {
		// Every mail is recorded by now; a QUIT the server no longer
		// answers loses nothing, so it is worth a log line, not a failed
		// exit.
		if err := s.pool.Close(); err != nil {
			s.log.Warn("closing SMTP connections", "err", err)
		}
	}
	// The asynq client shares the store's Redis connection, which is the
	// caller's to close.
	return nil
}

// campaignEntry is what a worker keeps of a campaign between tasks: the
// configuration, which does not change after launch (the status does and is
// always read fresh), and its parsed templates.
type campaignEntry struct {
	c   repermit.Campaign
	tpl *mailer.Templates
	// keptWordings: the MailWording keys (step, locale, named) this
	// process has kept already (keepMailWording).
	keptWordings sync.Map
}

func (s *Server) campaign(ctx context.Context, id string) (*campaignEntry, error) {
	s.mu.Lock()
	e := s.campaigns[id]
	s.mu.Unlock()
	if e != nil {
		return e, nil
	}
	c, err := s.store.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	tpl, err := mailer.LoadTemplates(c.TemplatesDir)
	if err != nil {
		return nil, fmt.Errorf("campaign %s: %w", id, err)
	}
	e = &campaignEntry{c: *c, tpl: tpl}
	s.mu.Lock()
	s.campaigns[id] = e
	s.mu.Unlock()
	return e, nil
}

func (s *Server) stopped() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// retryDelay is for handler errors (Redis unreachable, a bug); SMTP
// failures are retried per recipient by re-enqueueing, see backoff.
//
// Temporary SMTP failures never get here (send re-queues those itself), so
// an error is mostly Redis or the network. A Redis outage is usually a
// restart of seconds: the first retries come fast, with jitter, so a
// campaign picks up within seconds of Redis coming back instead of waiting
// out the SMTP backoff. A longer outage (a failover, a Redis that is
// being repaired) keeps retrying every half minute or so rather than
// falling into the SMTP backoff: its 16-minute steps stalled a campaign for
// a quarter of an hour after Redis was back. asynq's MaxRetry of the send
// tasks (100) then covers some 50 minutes of outage. A webhook delivery
// that failed otherwise waits out the webhook backoff: its receiver, not
// SMTP, sets the pace.
func (s *Server) retryDelay(n int, err error, t *asynq.Task) time.Duration {
	if repermit.ErrorCode(err) == repermit.EUNAVAILABLE {
		d := min(time.Second<<min(n, 5), unavailableRetryMax) // 1s, 2s, 4s, 8s, 16s, 30s, 30s…
		return d + time.Duration(rand.Int64N(int64(d)/2+1))
	}
	if t != nil && t.Type() == TypeWebhooks {
		return doubling(s.cfg.WebhookRetryBase, s.cfg.WebhookRetryMax, n+1)
	}
	return s.backoff(n + 1)
}

// unavailableRetryMax caps the delay between retries of a task that failed
// because Redis did not answer.
const unavailableRetryMax = 30 * time.Second

// asynqLogger adapts slog to asynq's logger.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
