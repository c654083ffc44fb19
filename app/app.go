// Package app builds repermit from its settings: the store, the link
// signer, the worker with its SMTP pool, the web server with its listeners.
// It is the one place the parts are wired together; `repermit worker`,
// `web` and `serve`, the demo and the benches all call New, each with the
// parts it needs, real or embedded (an in-process miniredis, an SMTP sink),
// as wtf's cmd/wtfd builds its Main.
//
// New does the I/O of wiring (connecting, listening) and nothing else; Run
// runs what New built until its context ends; Close releases it.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/hooks"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/metrics"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
	"github.com/repermit/repermit/web"
	"github.com/repermit/repermit/worker"
)

// DefaultRedisURL is the Redis New connects to when Settings name none.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// Settings say what New builds. Zero values leave a part out or take the
// default named beside it; the environment variable of each setting in
// `repermit` is named too.
type Settings struct {
	// RedisURL is the Redis to connect to (REPERMIT_REDIS_URL); default
	// DefaultRedisURL.
	RedisURL string
	// EmbeddedRedis starts an in-process miniredis instead of connecting
	// to RedisURL (the demo; a bench without a Redis). Close stops it.
	EmbeddedRedis bool
	// Store is an open store to use instead of either (a bench's store of
	// its own prefix on a shared connection); Close leaves it open.
	Store *redisstore.Store
	// Prefix is the Redis key prefix and asynq queue (REPERMIT_PREFIX);
	// default "repermit". Ignored with Store, which has its own.
	Prefix string

	// Secret signs the links in the mails (REPERMIT_SECRET: 32 bytes or
	// more, "new,old" to rotate); required with Worker or Web. The signer
	// is bound to the store's deployment (token.Deployment), so a link of
	// another prefix or Redis never verifies here.
	Secret string

	// SMTPURL is the server the worker sends through (REPERMIT_SMTP_URL);
	// required with Worker unless EmbeddedSMTP is set.
	SMTPURL string
	// EmbeddedSMTP, when set with Worker, starts an in-process SMTP sink
	// with these options and sends there instead (the demo, the send
	// bench). Close stops it, after the worker has said QUIT.
	EmbeddedSMTP *smtpsink.Options

	// Worker, when set, builds a worker from it; New fills in its Store,
	// Signer and SMTP, and its Logger and Observer where unset.
	Worker *worker.Config
	// Web, when set, builds the web server from it; New fills in its Store
	// and Signer, and its Logger and Registry where unset.
	Web *web.Config
	// Hooks, when set with Web, serves the ESP webhooks (package hooks);
	// New fills in its Processor, and its Logger where unset.
	Hooks *hooks.Config
	// Registry, when set, receives the worker's outcome counters and the
	// queue and feedback gauges, and is what /metrics serves; default the
	// web server's own (see web.Config.Registry), without them.
	Registry *prometheus.Registry

	// Addr, when set with Web, is where Run serves it
	// (REPERMIT_HTTP_ADDR); a port 0 takes a free one (see URL). AdminAddr
	// (REPERMIT_ADMIN_ADDR), when set and not Addr, serves /admin and
	// /metrics apart, the recipients' pages staying on Addr. TLS, when
	// set, is spoken on Addr.
	Addr, AdminAddr string
	TLS             *tls.Config

	// Logger receives the parts' logs; default slog.Default().
	Logger *slog.Logger
}

// App is the application New built. Its parts are nil where Settings left
// them out.
type App struct {
	Store  *redisstore.Store
	Signer *token.Signer // nil without Settings.Secret
	Worker *worker.Server
	Web    *web.Server
	// Sink is the embedded SMTP sink; MiniRedis the embedded Redis.
	Sink      *smtpsink.Sink
	MiniRedis *miniredis.Miniredis

	log      *slog.Logger
	tls      *tls.Config
	pub, adm net.Listener // adm nil: everything on pub
	sched    *worker.Scheduler
	closers  []func() // in the order opened; Close runs them backwards
}

// New builds the parts Settings ask for. Settings are checked before any
// I/O; a bad one is an EINVALID error naming its environment variable.
// On error nothing stays open.
func New(ctx context.Context, s Settings) (a *App, err error) {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Prefix == "" {
		s.Prefix = "repermit"
	}
	secrets, smtpCfg, err := check(s)
	if err != nil {
		return nil, err
	}
	a = &App{log: s.Logger, tls: s.TLS}
	defer func() {
		if err != nil {
			a.Close()
			a = nil
		}
	}()
	if err := a.openStore(ctx, s); err != nil {
		return a, err
	}
	if secrets != nil {
		// Links are bound to this deployment: a token signed under another
		// prefix, or another Redis, fails here whatever the secret.
		id, err := a.Store.Deployment(ctx)
		if err != nil {
			return a, err
		}
		if a.Signer, err = token.NewBoundSigner(secrets, token.Deployment(a.Store.Prefix(), id)); err != nil {
			return a, err
		}
	}
	if s.Worker != nil {
		if s.EmbeddedSMTP != nil {
			// Started before the worker and closed after it, so that the
			// pool's QUIT finds it still listening.
			sink, err := smtpsink.Start(context.WithoutCancel(ctx), *s.EmbeddedSMTP)
			if err != nil {
				return a, fmt.Errorf("start SMTP sink: %w", err)
			}
			a.Sink = sink
			a.closers = append(a.closers, func() { sink.Close() })
			if smtpCfg, err = mailer.ParseSMTPURL(sink.URL()); err != nil {
				return a, err
			}
		}
		cfg := *s.Worker
		cfg.Store, cfg.Signer, cfg.SMTP = a.Store, a.Signer, smtpCfg
		if cfg.Logger == nil {
			cfg.Logger = s.Logger
		}
		if cfg.Observer == nil && s.Registry != nil {
			cfg.Observer = metrics.NewWorkerObserver(s.Registry)
		}
		if a.Worker, err = worker.New(cfg); err != nil {
			return a, err
		}
		a.sched = a.Worker.Scheduler()
	}
	if s.Web != nil {
		if err := a.buildWeb(s); err != nil {
			return a, err
		}
	}
	return a, nil
}

// check checks the settings that need no I/O and parses the secret and
// the SMTP URL.
func check(s Settings) (secrets [][]byte, smtp mailer.Config, err error) {
	if s.Secret == "" && (s.Worker != nil || s.Web != nil) {
		return nil, smtp, repermit.Errorf(repermit.EINVALID, "REPERMIT_SECRET is not set: it signs the links in the mails (32 bytes or more; new,old to rotate)")
	}
	if s.Secret != "" {
		if secrets, err = token.ParseSecrets(s.Secret); err != nil {
			// The user-facing message must name the variable; ErrorMessage
			// would otherwise show only the inner text.
			return nil, smtp, repermit.Errorf(repermit.EINVALID, "REPERMIT_SECRET: %s", repermit.ErrorMessage(err))
		}
	}
	if s.Worker != nil && s.EmbeddedSMTP == nil {
		if s.SMTPURL == "" {
			return nil, smtp, repermit.Errorf(repermit.EINVALID, "REPERMIT_SMTP_URL is not set, e.g. smtp://user:pass@mail.example:587?tls=starttls")
		}
		if smtp, err = mailer.ParseSMTPURL(s.SMTPURL); err != nil {
			return nil, smtp, repermit.Errorf(repermit.EINVALID, "REPERMIT_SMTP_URL: %s", repermit.ErrorMessage(err))
		}
	}
	if s.Hooks != nil && s.Web == nil {
		return nil, smtp, errors.New("app: Hooks need Web")
	}
	return secrets, smtp, nil
}

func (a *App) openStore(ctx context.Context, s Settings) error {
	if s.Store != nil {
		a.Store = s.Store
		return nil
	}
	url := s.RedisURL
	if s.EmbeddedRedis {
		m := miniredis.NewMiniRedis()
		// Without ClockTTL keys never expire in miniredis, asynq's locks
		// included.
		m.ClockTTL(true)
		if err := m.Start(); err != nil {
			return fmt.Errorf("start embedded redis: %w", err)
		}
		a.MiniRedis = m
		a.closers = append(a.closers, m.Close)
		url = "redis://" + m.Addr()
	}
	if url == "" {
		url = DefaultRedisURL
	}
	st, err := redisstore.Open(ctx, url, s.Prefix)
	if repermit.ErrorCode(err) == repermit.EINVALID {
		return repermit.Errorf(repermit.EINVALID, "REPERMIT_REDIS_URL: %s", repermit.ErrorMessage(err))
	}
	if err != nil {
		return err
	}
	a.Store = st
	a.closers = append(a.closers, func() { st.Close() })
	return nil
}

func (a *App) buildWeb(s Settings) error {
	cfg := *s.Web
	cfg.Store, cfg.Signer = a.Store, a.Signer
	if cfg.Logger == nil {
		cfg.Logger = s.Logger
	}
	if s.Registry != nil {
		if err := metrics.RegisterQueue(s.Registry, a.Store); err != nil {
			return err
		}
		if err := metrics.RegisterFeedback(s.Registry, a.Store); err != nil {
			return err
		}
		if cfg.Registry == nil {
			cfg.Registry = s.Registry
		}
	}
	if s.Hooks != nil {
		hc := *s.Hooks
		hc.Processor = &bounces.Processor{Store: a.Store, Signer: a.Signer}
		if hc.Logger == nil {
			hc.Logger = s.Logger.With("component", "hooks")
		}
		cfg.Hooks = hooks.New(hc)
	}
	var err error
	if a.Web, err = web.New(cfg); err != nil {
		return err
	}
	if s.Addr == "" {
		return nil
	}
	if a.pub, err = net.Listen("tcp", s.Addr); err != nil {
		return fmt.Errorf("listen %s: %w", s.Addr, err)
	}
	a.closers = append(a.closers, func() { a.pub.Close() })
	if s.AdminAddr != "" && s.AdminAddr != s.Addr {
		if a.adm, err = net.Listen("tcp", s.AdminAddr); err != nil {
			return fmt.Errorf("listen %s (REPERMIT_ADMIN_ADDR): %w", s.AdminAddr, err)
		}
		a.closers = append(a.closers, func() { a.adm.Close() })
	}
	return nil
}

// URL is the base URL of the web server's listener on Settings.Addr, with
// the port it took; "" when New listens on none.
func (a *App) URL() string {
	if a.pub == nil {
		return ""
	}
	if a.tls != nil {
		return "https://" + a.pub.Addr().String()
	}
	return "http://" + a.pub.Addr().String()
}

// AdminURL is the base URL of /admin and /metrics: the listener on
// Settings.AdminAddr, or URL when they share one.
func (a *App) AdminURL() string {
	if a.adm == nil {
		return a.URL()
	}
	return "http://" + a.adm.Addr().String()
}

// Scheduler arms launched campaigns on the app's queue (launch.Launch):
// the worker's scheduler, or one of its own when there is no worker.
func (a *App) Scheduler() *worker.Scheduler {
	if a.sched == nil {
		c := a.Store.Enqueuer()
		a.closers = append(a.closers, func() { c.Close() })
		a.sched = worker.NewScheduler(c, a.Store.Prefix())
	}
	return a.sched
}

// Run runs the worker and serves the web server on its listeners, those of
// them New built, until ctx ends or one of them stops; then it stops the
// others and returns their errors. Each runs at most once.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runs []func(context.Context) error
	if a.Worker != nil {
		runs = append(runs, a.Worker.Run)
	}
	switch {
	case a.pub != nil && a.adm == nil:
		a.log.Info("web server listening", "addr", a.pub.Addr().String(), "admin", "same listener", "tls", a.tls != nil)
		runs = append(runs, func(ctx context.Context) error { return a.Web.ServeHandlerTLS(ctx, a.pub, a.Web, a.tls) })
	case a.pub != nil:
		a.log.Info("web server listening", "addr", a.pub.Addr().String(), "admin_addr", a.adm.Addr().String(), "tls", a.tls != nil)
		runs = append(runs,
			func(ctx context.Context) error {
				return a.Web.ServeHandlerTLS(ctx, a.pub, a.Web.PublicHandler(), a.tls)
			},
			func(ctx context.Context) error { return a.Web.ServeHandler(ctx, a.adm, a.Web.AdminHandler()) })
	}
	if len(runs) == 0 {
		return errors.New("app: nothing to run (no worker, no web listener)")
	}
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// When one stops, so do the others: a worker without its web
			// server, or the reverse, is not what was started.
			defer cancel()
			errs[i] = run(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close releases what New opened, in the reverse order: the listeners,
// the embedded SMTP sink, the store's connection, the embedded Redis. Call
// it after Run has returned.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}
