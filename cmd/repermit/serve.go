package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/hooks"
	"github.com/repermit/repermit/ledgerio"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/metrics"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
	"github.com/repermit/repermit/web"
	"github.com/repermit/repermit/worker"
)

// serverFlags are the settings worker, web and serve share.
type serverFlags struct {
	poolSize    *int
	concurrency *int
	addr        *string
	adminAddr   *string
}

func newServerFlagSet(name string, s Settings) (*flag.FlagSet, serverFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return fs, serverFlags{
		poolSize:    fs.Int("smtp-connections", 16, "SMTP connections the worker keeps open"),
		concurrency: fs.Int("concurrency", 0, "tasks the worker runs at once (default four times the SMTP connections)"),
		addr:        fs.String("addr", s.HTTPAddr, "listen address of the web server (REPERMIT_HTTP_ADDR)"),
		adminAddr:   fs.String("admin-addr", s.AdminAddr, "listen address of /admin and /metrics (REPERMIT_ADMIN_ADDR); the same as --addr serves all on one"),
	}
}

// signer checks REPERMIT_SECRET and returns a signer bound to deployment
// (token.Deployment).
func signer(s Settings, deployment string) (*token.Signer, error) {
	if s.Secret == "" {
		return nil, usageError("REPERMIT_SECRET is not set: it signs the links in the mails (32 bytes or more; new,old to rotate)")
	}
	secrets, err := token.ParseSecrets(s.Secret)
	if err != nil {
		// The user-facing message must name the variable; ErrorMessage
		// would otherwise show only the inner text.
		return nil, repermit.Errorf(repermit.EINVALID, "REPERMIT_SECRET: %s", repermit.ErrorMessage(err))
	}
	return token.NewBoundSigner(secrets, deployment)
}

func smtpConfig(s Settings) (mailer.Config, error) {
	if s.SMTPURL == "" {
		return mailer.Config{}, usageError("REPERMIT_SMTP_URL is not set, e.g. smtp://user:pass@mail.example:587?tls=starttls")
	}
	cfg, err := mailer.ParseSMTPURL(s.SMTPURL)
	if err != nil {
		return mailer.Config{}, repermit.Errorf(repermit.EINVALID, "REPERMIT_SMTP_URL: %s", repermit.ErrorMessage(err))
	}
	return cfg, nil
}

// parts are what the long-running commands are built from.
type parts struct {
	store    *redisstore.Store
	signer   *token.Signer
	registry *prometheus.Registry
	logger   *slog.Logger
	close    func()
}

func openParts(ctx context.Context, env Env) (*parts, error) {
	s := env.settings()
	// The secret is checked before Redis is: a missing one is the more
	// useful message.
	if _, err := signer(s, ""); err != nil {
		return nil, err
	}
	st, closeStore, err := openStore(ctx, s)
	if err != nil {
		return nil, err
	}
	// Links are bound to this deployment: a token signed under another
	// prefix, or another Redis, fails here whatever the secret.
	id, err := st.Deployment(ctx)
	if err != nil {
		closeStore()
		return nil, err
	}
	sig, err := signer(s, token.Deployment(st.Prefix(), id))
	if err != nil {
		closeStore()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &parts{store: st, signer: sig, registry: reg, logger: newLogger(env.Stderr), close: closeStore}, nil
}

func (p *parts) worker(env Env, f serverFlags) (*worker.Server, error) {
	smtp, err := smtpConfig(env.settings())
	if err != nil {
		return nil, err
	}
	box, interval, err := bounceMailbox(env)
	if err != nil {
		return nil, err
	}
	ledgerKey, err := ledgerSigner(env, false)
	if err != nil {
		return nil, err
	}
	witness, err := ledgerio.NewWitness(env.Getenv("REPERMIT_LEDGER_WITNESS"))
	if err != nil {
		return nil, usageError("REPERMIT_LEDGER_WITNESS: %s", repermit.ErrorMessage(err))
	}
	if witness != nil && ledgerKey == nil {
		return nil, usageError("REPERMIT_LEDGER_WITNESS needs REPERMIT_LEDGER_KEY to sign the checkpoints it receives")
	}
	return worker.New(worker.Config{
		Store:          p.store,
		Signer:         p.signer,
		SMTP:           smtp,
		PoolSize:       *f.poolSize,
		Concurrency:    *f.concurrency,
		Logger:         p.logger,
		Observer:       metrics.NewWorkerObserver(p.registry),
		BounceMailbox:  box,
		BounceInterval: interval,
		LedgerSigner:   ledgerKey,
		Witness:        witness,
	})
}

// bounceMailbox reads REPERMIT_BOUNCE_IMAP_URL (unset: no bounce mailbox)
// and REPERMIT_BOUNCE_INTERVAL (how often it is polled, default 1m).
func bounceMailbox(env Env) (*bounces.MailboxConfig, time.Duration, error) {
	raw := env.Getenv("REPERMIT_BOUNCE_IMAP_URL")
	if raw == "" {
		return nil, 0, nil
	}
	cfg, err := bounces.ParseIMAPURL(raw)
	if err != nil {
		return nil, 0, repermit.Errorf(repermit.EINVALID, "REPERMIT_BOUNCE_IMAP_URL: %s", repermit.ErrorMessage(err))
	}
	var interval time.Duration
	if v := env.Getenv("REPERMIT_BOUNCE_INTERVAL"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil || interval <= 0 {
			return nil, 0, repermit.Errorf(repermit.EINVALID, "REPERMIT_BOUNCE_INTERVAL=%q is not a positive duration", v)
		}
	}
	return &cfg, interval, nil
}

// minAdminToken is the shortest REPERMIT_ADMIN_TOKEN accepted: 256 bits
// when random, out of reach of guessing even unthrottled.
const minAdminToken = 32

func (p *parts) web(env Env) (*web.Server, error) {
	if tok := env.settings().AdminToken; tok != "" && len(tok) < minAdminToken {
		return nil, repermit.Errorf(repermit.EINVALID,
			"REPERMIT_ADMIN_TOKEN is %d bytes; it must be at least %d (e.g. openssl rand -hex 32), or unset to refuse every admin request", len(tok), minAdminToken)
	}
	if err := metrics.RegisterQueue(p.registry, p.store); err != nil {
		return nil, err
	}
	if err := metrics.RegisterFeedback(p.registry, p.store); err != nil {
		return nil, err
	}
	hk, err := espHooks(env, p)
	if err != nil {
		return nil, err
	}
	proxies, err := web.ParseTrustedProxies(env.settings().TrustedProxies)
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "REPERMIT_TRUSTED_PROXIES: %v", err)
	}
	return web.New(web.Config{
		Store:          p.store,
		Signer:         p.signer,
		AdminToken:     env.settings().AdminToken,
		TrustedProxies: proxies,
		Logger:         p.logger,
		Registry:       p.registry,
		Hooks:          hk,
	})
}

// espHooks builds the ESP webhook endpoints from the environment; nil when
// none is configured. REPERMIT_HOOK_POSTMARK=user:password (basic auth in
// the webhook URL), REPERMIT_HOOK_SENDGRID_KEY (the signed event webhook's
// verification key), REPERMIT_HOOK_MAILGUN_KEY (the HTTP webhook signing
// key), REPERMIT_HOOK_SES_TOPICS (SNS topic ARNs accepted, comma-separated,
// or * for any topic whose messages Amazon SNS signed).
func espHooks(env Env, p *parts) (http.Handler, error) {
	cfg := hooks.Config{
		Processor: &bounces.Processor{Store: p.store, Signer: p.signer},
		Logger:    p.logger.With("component", "hooks"),
	}
	enabled := false
	if v := env.Getenv("REPERMIT_HOOK_POSTMARK"); v != "" {
		user, pass, ok := strings.Cut(v, ":")
		if !ok || user == "" || len(pass) < 16 {
			return nil, repermit.Errorf(repermit.EINVALID, "REPERMIT_HOOK_POSTMARK: want user:password, the password at least 16 characters")
		}
		cfg.PostmarkUser, cfg.PostmarkPassword, enabled = user, pass, true
	}
	if v := env.Getenv("REPERMIT_HOOK_SENDGRID_KEY"); v != "" {
		k, err := hooks.ParseSendGridKey(v)
		if err != nil {
			return nil, repermit.Errorf(repermit.EINVALID, "REPERMIT_HOOK_SENDGRID_KEY: %s", repermit.ErrorMessage(err))
		}
		cfg.SendGridKey, enabled = k, true
	}
	if v := env.Getenv("REPERMIT_HOOK_MAILGUN_KEY"); v != "" {
		cfg.MailgunKey, enabled = []byte(v), true
	}
	if v := env.Getenv("REPERMIT_HOOK_SES_TOPICS"); v != "" {
		cfg.SES, enabled = true, true
		if v != "*" {
			for _, arn := range strings.Split(v, ",") {
				cfg.SNSTopics = append(cfg.SNSTopics, strings.TrimSpace(arn))
			}
		}
	}
	if !enabled {
		return nil, nil
	}
	return hooks.New(cfg), nil
}

// tlsConfig loads REPERMIT_TLS_CERT and REPERMIT_TLS_KEY; nil when neither
// is set. The files are read once, at start: restart after renewing them.
func tlsConfig(s Settings) (*tls.Config, error) {
	switch {
	case s.TLSCert == "" && s.TLSKey == "":
		return nil, nil
	case s.TLSCert == "":
		return nil, usageError("REPERMIT_TLS_KEY is set but REPERMIT_TLS_CERT is not; set both or neither")
	case s.TLSKey == "":
		return nil, usageError("REPERMIT_TLS_CERT is set but REPERMIT_TLS_KEY is not; set both or neither")
	}
	cert, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "REPERMIT_TLS_CERT/REPERMIT_TLS_KEY: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// startServer parses a server command's flags and opens what it runs on.
func startServer(ctx context.Context, env Env, name string, args []string) (*parts, serverFlags, error) {
	fs, f := newServerFlagSet(name, env.settings())
	if _, err := parse(fs, args, 0); err != nil {
		return nil, f, err
	}
	p, err := openParts(ctx, env)
	return p, f, err
}

func runWorker(ctx context.Context, env Env, args []string) error {
	p, f, err := startServer(ctx, env, "worker", args)
	if err != nil {
		return err
	}
	defer p.close()
	w, err := p.worker(env, f)
	if err != nil {
		return err
	}
	p.logger.Info("worker started", "prefix", p.store.Prefix())
	return w.Run(ctx)
}

func runWeb(ctx context.Context, env Env, args []string) error {
	p, f, err := startServer(ctx, env, "web", args)
	if err != nil {
		return err
	}
	defer p.close()
	h, err := p.web(env)
	if err != nil {
		return err
	}
	tc, err := tlsConfig(env.settings())
	if err != nil {
		return err
	}
	return p.serveWeb(ctx, h, f, tc)
}

// serveWeb serves the recipients' pages on --addr and /admin and /metrics
// on --admin-addr, or everything on one listener when both are the same,
// until ctx is done.
func (p *parts) serveWeb(ctx context.Context, h *web.Server, f serverFlags, tc *tls.Config) error {
	if *f.adminAddr == *f.addr {
		ln, err := net.Listen("tcp", *f.addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", *f.addr, err)
		}
		p.logger.Info("web server listening", "addr", *f.addr, "admin", "same listener", "tls", tc != nil)
		return h.ServeHandlerTLS(ctx, ln, h, tc)
	}
	pub, err := net.Listen("tcp", *f.addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *f.addr, err)
	}
	adm, err := net.Listen("tcp", *f.adminAddr)
	if err != nil {
		pub.Close()
		return fmt.Errorf("listen %s (REPERMIT_ADMIN_ADDR): %w", *f.adminAddr, err)
	}
	p.logger.Info("web server listening", "addr", *f.addr, "admin_addr", *f.adminAddr, "tls", tc != nil)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer cancel(); errs[0] = h.ServeHandlerTLS(ctx, pub, h.PublicHandler(), tc) }()
	go func() { defer wg.Done(); defer cancel(); errs[1] = h.ServeHandler(ctx, adm, h.AdminHandler()) }()
	wg.Wait()
	return errors.Join(errs...)
}

// runServe runs worker and web in one process; when either stops, so does
// the other.
func runServe(ctx context.Context, env Env, args []string) error {
	p, f, err := startServer(ctx, env, "serve", args)
	if err != nil {
		return err
	}
	defer p.close()
	w, err := p.worker(env, f)
	if err != nil {
		return err
	}
	h, err := p.web(env)
	if err != nil {
		return err
	}
	tc, err := tlsConfig(env.settings())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); defer cancel(); errs[0] = w.Run(ctx) }()
	go func() { defer wg.Done(); defer cancel(); errs[1] = p.serveWeb(ctx, h, f, tc) }()
	p.logger.Info("serving", "prefix", p.store.Prefix())
	wg.Wait()
	return errors.Join(errs...)
}
