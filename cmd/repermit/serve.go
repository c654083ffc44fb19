package main

import (
	"context"
	"crypto/tls"
	"flag"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/app"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/hooks"
	"github.com/repermit/repermit/ledgerio"
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

// serverSettings reads the settings of a server command from the
// environment and its flags. It does no I/O but reading the files the
// variables name (TLS, ledger key): bad input is refused before Redis is
// touched.
func serverSettings(env Env, f serverFlags, withWorker, withWeb bool) (app.Settings, error) {
	s := env.settings()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	as := app.Settings{
		RedisURL: s.RedisURL,
		Prefix:   s.Prefix,
		Secret:   s.Secret,
		SMTPURL:  s.SMTPURL,
		Registry: reg,
		Logger:   newLogger(env.Stderr),
	}
	if s.Secret == "" {
		// The most useful message comes first.
		return as, usageError("REPERMIT_SECRET is not set: it signs the links in the mails (32 bytes or more; new,old to rotate)")
	}
	if withWorker {
		box, interval, err := bounceMailbox(env)
		if err != nil {
			return as, err
		}
		ledgerKey, err := ledgerSigner(env, false)
		if err != nil {
			return as, err
		}
		witness, err := ledgerio.NewWitness(env.Getenv("REPERMIT_LEDGER_WITNESS"))
		if err != nil {
			return as, usageError("REPERMIT_LEDGER_WITNESS: %s", repermit.ErrorMessage(err))
		}
		if witness != nil && ledgerKey == nil {
			return as, usageError("REPERMIT_LEDGER_WITNESS needs REPERMIT_LEDGER_KEY to sign the checkpoints it receives")
		}
		hooks, err := webhookTiming(env)
		if err != nil {
			return as, err
		}
		as.Worker = &worker.Config{
			PoolSize:       *f.poolSize,
			Concurrency:    *f.concurrency,
			BounceMailbox:  box,
			BounceInterval: interval,
			LedgerSigner:   ledgerKey,
			Witness:        witness,

			WebhookInterval:  hooks.interval,
			WebhookRetryBase: hooks.retry,
			WebhookRetryMax:  hooks.retryMax,
		}
	}
	if withWeb {
		if tok := s.AdminToken; tok != "" && len(tok) < minAdminToken {
			return as, repermit.Errorf(repermit.EINVALID,
				"REPERMIT_ADMIN_TOKEN is %d bytes; it must be at least %d (e.g. openssl rand -hex 32), or unset to refuse every admin request", len(tok), minAdminToken)
		}
		hk, err := espHooks(env)
		if err != nil {
			return as, err
		}
		proxies, err := web.ParseTrustedProxies(s.TrustedProxies)
		if err != nil {
			return as, repermit.Errorf(repermit.EINVALID, "REPERMIT_TRUSTED_PROXIES: %v", err)
		}
		tc, err := tlsConfig(s)
		if err != nil {
			return as, err
		}
		as.Web = &web.Config{AdminToken: s.AdminToken, TrustedProxies: proxies}
		as.Hooks, as.TLS = hk, tc
		as.Addr, as.AdminAddr = *f.addr, *f.adminAddr
	}
	return as, nil
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

// webhookTimes are the webhook delivery's settings from the environment
// (zero: the worker's default).
type webhookTimes struct{ interval, retry, retryMax time.Duration }

// webhookTiming reads REPERMIT_WEBHOOK_INTERVAL (how often waiting events
// are offered for delivery, default 5s), REPERMIT_WEBHOOK_RETRY (the
// first wait after a receiver failed, default 5s) and
// REPERMIT_WEBHOOK_RETRY_MAX (the longest the wait doubles to, default
// 10m).
func webhookTiming(env Env) (webhookTimes, error) {
	var w webhookTimes
	for _, v := range []struct {
		name string
		to   *time.Duration
	}{{"REPERMIT_WEBHOOK_INTERVAL", &w.interval}, {"REPERMIT_WEBHOOK_RETRY", &w.retry}, {"REPERMIT_WEBHOOK_RETRY_MAX", &w.retryMax}} {
		raw := env.Getenv(v.name)
		if raw == "" {
			continue
		}
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 {
			return webhookTimes{}, repermit.Errorf(repermit.EINVALID, "%s=%q is not a positive duration", v.name, raw)
		}
		*v.to = d
	}
	return w, nil
}

// minAdminToken is the shortest REPERMIT_ADMIN_TOKEN accepted: 256 bits
// when random, out of reach of guessing even unthrottled.
const minAdminToken = 32

// espHooks reads the ESP webhook endpoints' settings from the environment;
// nil when none is configured. REPERMIT_HOOK_POSTMARK=user:password (basic auth in
// the webhook URL), REPERMIT_HOOK_SENDGRID_KEY (the signed event webhook's
// verification key), REPERMIT_HOOK_MAILGUN_KEY (the HTTP webhook signing
// key), REPERMIT_HOOK_SES_TOPICS (SNS topic ARNs accepted, comma-separated,
// or * for any topic whose messages Amazon SNS signed).
func espHooks(env Env) (*hooks.Config, error) {
	var cfg hooks.Config
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
	return &cfg, nil
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
	// Read as regular files only (not tls.LoadX509KeyPair's
	// os.ReadFile): a FIFO would hang the start in open(2), past Ctrl-C.
	certPEM, err := repermit.ReadFile(s.TLSCert)
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "REPERMIT_TLS_CERT: %v", err)
	}
	keyPEM, err := repermit.ReadFile(s.TLSKey)
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "REPERMIT_TLS_KEY: %v", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "REPERMIT_TLS_CERT/REPERMIT_TLS_KEY: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// startServer parses a server command's flags and builds what it runs.
func startServer(ctx context.Context, env Env, name string, args []string, withWorker, withWeb bool) (*app.App, *slog.Logger, error) {
	fs, f := newServerFlagSet(name, env.settings())
	if _, err := parse(fs, args, 0); err != nil {
		return nil, nil, err
	}
	as, err := serverSettings(env, f, withWorker, withWeb)
	if err != nil {
		return nil, nil, err
	}
	a, err := app.New(ctx, as)
	return a, as.Logger, err
}

func runWorker(ctx context.Context, env Env, args []string) error {
	a, log, err := startServer(ctx, env, "worker", args, true, false)
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("worker started", "prefix", a.Store.Prefix())
	return a.Run(ctx)
}

func runWeb(ctx context.Context, env Env, args []string) error {
	a, _, err := startServer(ctx, env, "web", args, false, true)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

// runServe runs worker and web in one process; when either stops, so does
// the other.
func runServe(ctx context.Context, env Env, args []string) error {
	a, log, err := startServer(ctx, env, "serve", args, true, true)
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("serving", "prefix", a.Store.Prefix())
	return a.Run(ctx)
}
