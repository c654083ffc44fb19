// Package demo runs the whole engine in one process on a sample campaign in
// compressed time: an embedded Redis (miniredis) and SMTP sink unless real
// ones are configured, the web server on a free port, a worker, and
// simulated recipients who read their mail and answer through the web
// server like a browser or a mail client would. `repermit demo` calls Run.
//
// The simulated recipients read the real messages out of the in-process
// sink. When an external SMTP server is configured (REPERMIT_SMTP_URL) the
// demo cannot read the mailboxes; the recipients then take their links from
// the campaign's state in Redis, signed with the demo's own key exactly as
// the worker signs them, and still answer through the web server.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/app"
	"github.com/repermit/repermit/launch"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
	"github.com/repermit/repermit/web"
	"github.com/repermit/repermit/worker"
)

// Config configures a demo run. Zero values give the README's demo.
type Config struct {
	// Recipients is the list size; default 200.
	Recipients int
	// Keep leaves the web server running after the funnel, with a fresh
	// one-recipient campaign whose link a person can open, until ctx ends.
	Keep bool
	// RedisURL and SMTPURL name real servers; empty means embedded.
	RedisURL string
	SMTPURL  string
	// Secret signs the links; empty means a random one.
	Secret string
	// HTTPAddr is where the web server listens; default a free port on
	// 127.0.0.1.
	HTTPAddr string
	// Prefix is the Redis key prefix and asynq queue; default "demo-" and
	// random hex, so that a demo on a shared Redis touches nothing else.
	Prefix string
	// Deadline and Reminder compress the campaign's 30 days and first
	// reminder; defaults 20s and 8s.
	Deadline, Reminder time.Duration
	// MaxPause is the longest a simulated recipient waits before acting on
	// a mail; default 3s.
	MaxPause time.Duration
	// Seed makes the recipients' behaviour repeatable; default 1.
	Seed uint64
	// Out receives the progress lines and the funnel; Logger the engine's
	// logs (default: discarded, the progress lines tell the story).
	Out    io.Writer
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Recipients <= 0 {
		c.Recipients = 200
	}
	if c.Deadline <= 0 {
		c.Deadline = 20 * time.Second
	}
	if c.Reminder <= 0 {
		c.Reminder = 8 * time.Second
	}
	if c.MaxPause <= 0 {
		c.MaxPause = 3 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:0"
	}
}

// Result is what a demo run did.
type Result struct {
	Campaign string
	Import   repermit.ImportResult
	// Counts are the final recipients per state; they add up to
	// Import.Imported.
	Counts repermit.Counts
	// Aimed is what the simulated recipients set out to do, by the state
	// it leads to.
	Aimed repermit.Counts
	// Mails and Reminders the simulated recipients received; Requests they
	// made to the web server.
	Mails, Reminders, Requests int64
	// Late counts actions refused because the deadline had passed.
	Late    int64
	Elapsed time.Duration
}

// CampaignID is the id of the demo campaign.
const CampaignID = "newsletter-reconsent-demo"

// Run runs the demo to the end of its campaign and prints its progress and
// funnel to cfg.Out.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	began := time.Now()
	plan := NewPlan(cfg.Recipients, cfg.Seed, cfg.SMTPURL == "")
	e, err := start(ctx, &cfg, plan.With(Bounce))
	if err != nil {
		return Result{}, err
	}
	defer e.close()

	dir, err := os.MkdirTemp("", "repermit-demo-")
	if err != nil {
		return Result{}, fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	// Start a moment after launch, so the addresses that land on the
	// suppression list meanwhile (by "another campaign") are refused at
	// send time.
	tm := campaignTimes{StartAt: time.Now().Add(2 * time.Second).Truncate(time.Second), Deadline: cfg.Deadline, Reminder: cfg.Reminder}
	perSecond := max(100, cfg.Recipients/2)
	path, err := plan.writeFiles(dir, CampaignID, e.baseURL, tm, perSecond)
	if err != nil {
		return Result{}, err
	}

	w := cfg.Out
	fmt.Fprintf(w, "repermit demo: Redis %s, SMTP %s, web server %s\n", e.redisDesc, e.smtpDesc, e.baseURL)
	fmt.Fprintf(w, "campaign %s: %d recipients, deadline %s, reminder after %s (compressed from 30 days and 7 days)\n",
		CampaignID, cfg.Recipients, cfg.Deadline, cfg.Reminder)
	rep, err := launch.Launch(ctx, path, e.store, e.scheduler, launch.Options{CheckTemplates: checkTemplates})
	if err != nil {
		return Result{}, fmt.Errorf("demo: launch: %w", err)
	}
	fmt.Fprintf(w, "launched: %d imported; skipped %d invalid, %d duplicate, %d on the suppression file\n",
		rep.Imported, rep.SkippedInvalid, rep.SkippedDuplicate, rep.SkippedSuppressed)
	if late := plan.With(SuppressedLater); len(late) > 0 {
		hashes := make([]string, len(late))
		for i, a := range late {
			hashes[i] = repermit.AddressHash(a)
		}
		if err := e.store.AddSuppression(ctx, redisstore.ReasonUnsubscribed, "another-campaign", time.Now(), hashes...); err != nil {
			return Result{}, fmt.Errorf("demo: suppress: %w", err)
		}
	}

	var src mailSource
	if e.sink != nil {
		src = &sinkSource{sink: e.sink}
	} else {
		src = &tokenSource{store: e.store, signer: e.signer, id: CampaignID, baseURL: e.baseURL, seen: make(map[int64]int)}
	}
	sim := newSimulator(plan, src, cfg.Seed, cfg.MaxPause)
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan struct{})
	go func() { sim.run(simCtx); close(simDone) }()
	defer func() { stopSim(); <-simDone }()

	final, err := e.watch(ctx, w, sim, tm.StartAt.Add(cfg.Deadline))
	stopSim()
	<-simDone
	res := Result{
		Campaign: CampaignID, Import: rep.ImportResult, Counts: final.Counts, Aimed: plan.Aimed(),
		Mails: sim.mails.Load(), Reminders: sim.reminders.Load(), Requests: sim.requests.Load(),
		Late: sim.late.Load(), Elapsed: time.Since(began),
	}
	if err != nil {
		return res, err
	}
	printFunnel(w, res, final)
	if e.app.MiniRedis == nil {
		fmt.Fprintf(w, "the campaign stays in Redis under the prefix %s: REPERMIT_PREFIX=%s repermit status %s\n", e.store.Prefix(), e.store.Prefix(), CampaignID)
	}
	if n, simErr := sim.err(); simErr != nil {
		return res, fmt.Errorf("demo: %d simulated recipients failed, first: %w", n, simErr)
	}
	if cfg.Keep {
		return res, e.keep(ctx, w, dir)
	}
	return res, nil
}

func checkTemplates(c *repermit.Campaign, locales []string) error {
	t, err := mailer.LoadTemplates(c.TemplatesDir)
	if err != nil {
		return err
	}
	if err := t.CheckCampaign(c, locales); err != nil {
		return err
	}
	return web.CheckPages(c, locales)
}

// engine is everything the demo runs: the application as `repermit serve`
// builds it (package app), with the demo's parts.
type engine struct {
	app       *app.App
	store     *redisstore.Store
	sink      *smtpsink.Sink
	signer    *token.Signer
	scheduler launch.Scheduler
	baseURL   string
	redisDesc string
	smtpDesc  string

	stop context.CancelFunc
	done chan struct{}
	errs chan error
}

// start builds the application on an embedded Redis (miniredis) and SMTP
// sink (which refuses the bounce addresses), or the real ones cfg names,
// and runs its worker and web server until close.
func start(ctx context.Context, cfg *Config, bounce []string) (*engine, error) {
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = "demo-" + randomHex(4)
	}
	secret := cfg.Secret
	if secret == "" {
		secret = randomHex(32)
	}
	var sink *smtpsink.Options
	if cfg.SMTPURL == "" {
		perm := make(map[string]bool, len(bounce))
		for _, a := range bounce {
			perm[a] = true
		}
		sink = &smtpsink.Options{PermFail: perm}
	}
	a, err := app.New(ctx, app.Settings{
		RedisURL:      cfg.RedisURL,
		EmbeddedRedis: cfg.RedisURL == "",
		Prefix:        prefix,
		Secret:        secret,
		SMTPURL:       cfg.SMTPURL,
		EmbeddedSMTP:  sink,
		Worker: &worker.Config{
			// Seconds instead of days: a temporary failure is retried
			// within the demo's deadline.
			RetryBase:     time.Second,
			RetryMax:      4 * time.Second,
			DomainPenalty: 2 * time.Second,
			SweepInterval: 5 * time.Second,
		},
		Web: &web.Config{
			// Every simulated recipient posts from 127.0.0.1; the
			// per-client limit would take them for one abusive client.
			RatePerSecond: -1,
			// miniredis is single-threaded; a large demo list answering
			// at once must not run into the 2s default.
			RequestTimeout: 10 * time.Second,
		},
		// Recipients' pages and /admin on one listener.
		Addr:   cfg.HTTPAddr,
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	e := &engine{
		app: a, store: a.Store, sink: a.Sink, signer: a.Signer, scheduler: a.Scheduler(),
		baseURL: a.URL(), smtpDesc: redactURL(cfg.SMTPURL),
		done: make(chan struct{}), errs: make(chan error, 1),
	}
	if a.MiniRedis != nil {
		e.redisDesc = "embedded (miniredis " + a.MiniRedis.Addr() + ")"
	} else {
		e.redisDesc = "at " + a.Store.Addr() // not the URL, which may hold a password
	}
	if a.Sink != nil {
		e.smtpDesc = "in-process sink " + a.Sink.Addr()
	}
	runCtx, stop := context.WithCancel(context.Background())
	e.stop = stop
	go func() {
		defer close(e.done)
		if err := a.Run(runCtx); err != nil {
			e.errs <- err
		}
	}()
	return e, nil
}

func (e *engine) close() {
	e.stop()
	<-e.done
	e.app.Close()
}

// watch prints a progress line a second until the campaign is finished
// and nobody is left pending or sent, and returns the final stats.
func (e *engine) watch(ctx context.Context, w io.Writer, sim *simulator, deadline time.Time) (redisstore.Stats, error) {
	began := time.Now()
	limit := time.NewTimer(time.Until(deadline) + 45*time.Second)
	defer limit.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return redisstore.Stats{}, ctx.Err()
		case err := <-e.errs:
			return redisstore.Stats{}, fmt.Errorf("demo: %w", err)
		case <-limit.C:
			st, _ := e.store.Stats(ctx, CampaignID)
			return st, fmt.Errorf("demo: the campaign did not finish within 45s of its deadline (%s)", countsLine(st.Counts))
		case <-tick.C:
		}
		c, err := e.store.Campaign(ctx, CampaignID)
		if err != nil {
			return redisstore.Stats{}, err
		}
		st, err := e.store.Stats(ctx, CampaignID)
		if err != nil {
			return redisstore.Stats{}, err
		}
		left := time.Until(deadline).Round(time.Second)
		phase := fmt.Sprintf("deadline in %3s", left)
		if left <= 0 {
			phase = "deadline passed"
		}
		fmt.Fprintf(w, "%4ds  %s  %s | mails read %d (reminders %d), clicks %d\n",
			int(time.Since(began).Seconds()), phase, countsLine(st.Counts), sim.mails.Load(), sim.reminders.Load(), sim.requests.Load())
		if c.Status == repermit.StatusFinished && st.Counts[repermit.StatePending] == 0 && st.Counts[repermit.StateSent] == 0 {
			return st, nil
		}
	}
}

func countsLine(c repermit.Counts) string {
	var b strings.Builder
	for i, s := range repermit.States() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s %d", s, c[s])
	}
	return b.String()
}

func printFunnel(w io.Writer, r Result, st redisstore.Stats) {
	fmt.Fprintf(w, "\nfunnel of %s after %s:\n", r.Campaign, r.Elapsed.Round(100*time.Millisecond))
	fmt.Fprintf(w, "  %-13s %6s  %6s  %s\n", "state", "count", "share", "aimed by the simulation")
	f := repermit.NewFunnel(st.Imported, st.Counts)
	for _, s := range repermit.States() {
		fmt.Fprintf(w, "  %-13s %6d  %5.1f%%  %d\n", s, st.Counts[s], f.Share(s), r.Aimed[s])
	}
	fmt.Fprintf(w, "  %-13s %6d  = imported %d (skipped: %d invalid, %d duplicate, %d on the suppression file)\n",
		"total", st.Counts.Total(), st.Imported, st.SkippedInvalid, st.SkippedDuplicate, st.SkippedSuppressed)
	fmt.Fprintf(w, "%d mails read by the recipients (%d reminders), %d requests to the web server, %d consent records in the ledger\n",
		r.Mails, r.Reminders, r.Requests, st.LedgerRecords)
	if r.Late > 0 {
		fmt.Fprintf(w, "%d answers came after the deadline and were refused (410)\n", r.Late)
	}
	fmt.Fprintln(w, f.Summary())
	fmt.Fprintln(w, "the silent are erased and their hashes suppressed; the unreached are kept for a later campaign")
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

func redactURL(u string) string {
	c, err := mailer.ParseSMTPURL(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return c.String()
}

// KeepCampaignID is the one-recipient campaign --keep launches for a
// person to answer in a browser.
const KeepCampaignID = "demo-try-it-yourself"

// keep launches a one-recipient campaign with an hour's deadline, prints
// its mail's links and serves until ctx ends.
func (e *engine) keep(ctx context.Context, w io.Writer, dir string) error {
	p := &Plan{Emails: []string{"you@example.com"}, Behaviour: map[string]Behaviour{"you@example.com": Silent}, Topics: []string{"newsletter", "events"}}
	kdir := dir + "/keep"
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	tm := campaignTimes{StartAt: time.Now().Truncate(time.Second).Add(time.Second), Deadline: time.Hour, Reminder: 30 * time.Minute}
	path, err := p.writeFiles(kdir, KeepCampaignID, e.baseURL, tm, 10)
	if err != nil {
		return err
	}
	if _, err := launch.Launch(ctx, path, e.store, e.scheduler, launch.Options{CheckTemplates: checkTemplates}); err != nil {
		return fmt.Errorf("demo: launch %s: %w", KeepCampaignID, err)
	}
	var src mailSource
	if e.sink != nil {
		src = &sinkSource{sink: e.sink, seen: e.sink.Count()}
	} else {
		src = &tokenSource{store: e.store, signer: e.signer, id: KeepCampaignID, baseURL: e.baseURL, seen: make(map[int64]int)}
	}
	for {
		links, err := src.poll(ctx)
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.To != "you@example.com" {
				continue
			}
			fmt.Fprintf(w, "\n--keep: the web server stays up at %s until Ctrl-C. A mail for you (campaign %s, deadline in 1h):\n\n", e.baseURL, KeepCampaignID)
			if l.Text != "" {
				fmt.Fprintf(w, "%s\n", indent(l.Text))
			}
			fmt.Fprintf(w, "  open:        %s\n  unsubscribe: %s (RFC 8058: curl -d List-Unsubscribe=One-Click %s)\n", l.Confirm, l.Unsubscribe, l.Unsubscribe)
			select {
			case <-ctx.Done():
				return nil
			case err := <-e.errs:
				return fmt.Errorf("demo: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-e.errs:
			return fmt.Errorf("demo: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ")
}
