package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/app"
	"github.com/repermit/repermit/token"
	"github.com/repermit/repermit/web"
)

// WebOptions tune Web. Zero values mean the defaults.
type WebOptions struct {
	// Concurrency is the number of client workers; default 16.
	Concurrency int
	// Requests bounds each phase; default 20000. The confirm phase needs a
	// recipient per request, so that many are imported.
	Requests int
	// MaxTime bounds each phase; default 20s.
	MaxTime time.Duration
	// CPUProfile, if set, receives a CPU profile of the confirm phase.
	CPUProfile io.Writer
	// LandingCPUProfile, if set, receives a CPU profile of the landing
	// phase.
	LandingCPUProfile io.Writer
}

func (o *WebOptions) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Requests <= 0 {
		o.Requests = 20000
	}
	if o.MaxTime <= 0 {
		o.MaxTime = 20 * time.Second
	}
}

// WebResult is the outcome of Web; the JSON keys are a contract.
type WebResult struct {
	Concurrency  int     `json:"concurrency"`
	PlainRPS     float64 `json:"plain_rps"`
	LandingRPS   float64 `json:"landing_rps"`
	ConfirmRPS   float64 `json:"confirm_rps"`
	LandingRatio float64 `json:"landing_ratio"`
	ConfirmRatio float64 `json:"confirm_ratio"`
	PlainP99     float64 `json:"plain_p99_ms"`
	// PlainRuns are both plain runs; PlainRPS is the faster.
	PlainRuns  []float64 `json:"plain_runs_rps"`
	LandingP99 float64   `json:"landing_p99_ms"`
	ConfirmP99 float64   `json:"confirm_p99_ms"`
	LandingP50 float64   `json:"landing_p50_ms"`
	ConfirmP50 float64   `json:"confirm_p50_ms"`
	// LandingFailed and ConfirmFailed count answers other than 200 (a
	// 503 when the server gives up); the rates count only the 200s.
	LandingFailed int `json:"landing_failed"`
	ConfirmFailed int `json:"confirm_failed"`
	// FirstFailure describes the first of them.
	FirstFailure string `json:"first_failure,omitempty"`
	// PlainCPU, LandingCPU and ConfirmCPU are the CPU time of this
	// process (the clients and the server, not Redis) per request
	// answered, in µs; 0 where not measured. On a shared machine they
	// compare builds better than the rates: other work slows the rates
	// but adds nothing to them. PlainCPU is of the faster plain run.
	PlainCPU   float64 `json:"plain_cpu_us"`
	LandingCPU float64 `json:"landing_cpu_us"`
	ConfirmCPU float64 `json:"confirm_cpu_us"`
	// LandingRedisCPU and ConfirmRedisCPU are the Redis servers' CPU time
	// (INFO cpu, every node) per request answered during the phase, in
	// µs; 0 where not measured. With the process's figures they are what
	// a request costs on the machine; a confirmation's Redis share is
	// about a third of it, so a build that moves work into Redis, or out
	// of it, shows here and not in ConfirmCPU.
	LandingRedisCPU float64 `json:"landing_redis_cpu_us"`
	ConfirmRedisCPU float64 `json:"confirm_redis_cpu_us"`
	// Confirmed is how many answers the campaign counts after the confirm
	// phase; it must equal the POSTs answered 200, each a real write.
	Confirmed int64 `json:"confirmed_counted"`
}

// Web serves the recipients' pages with our handler on one listener and a
// plain net/http hello handler on another, and drives both with the same
// keep-alive client from Concurrency workers: GET of the landing page with
// valid tokens, and POST of a confirmation for a distinct recipient each,
// so that every POST writes the state, the counts and a ledger record.
//
// The per-client POST limit is turned off: every request comes from
// 127.0.0.1, which the limit would rightly take for one abusive client.
func Web(ctx context.Context, t Target, opt WebOptions) (WebResult, error) {
	opt.defaults()
	if err := t.check(); err != nil {
		return WebResult{}, err
	}
	defer t.cleanup()
	res := WebResult{Concurrency: opt.Concurrency}
	n := opt.Requests

	st := t.store(t.Prefix)
	logOut := io.Discard
	if t.Log != nil {
		logOut = t.Log
	}
	// The web server as `repermit web` builds it, on the bench's store;
	// the bench serves its handler beside the plain one, in the same way.
	a, err := app.New(ctx, app.Settings{
		Store:  st,
		Secret: newSecret(),
		Web:    &web.Config{RatePerSecond: -1},
		Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return res, fmt.Errorf("bench web: %w", err)
	}
	defer a.Close()
	signer, h := a.Signer, a.Web
	t.logf("web: importing %d recipients", n)
	c, err := importDirect(ctx, st, "bench-web", n, time.Now(), t.row)
	if err != nil {
		return res, err
	}
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = signer.Sign(token.Claims{Purpose: token.Confirm, Campaign: c.ID, CampaignSeq: c.Seq, Recipient: uint32(i), Deadline: c.Deadline})
	}

	ours, stopOurs, err := serve(h)
	if err != nil {
		return res, err
	}
	defer stopOurs()
	hello := []byte("hello\n")
	plain, stopPlain, err := serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(hello)
	}))
	if err != nil {
		return res, err
	}
	defer stopPlain()

	client := newClient(opt.Concurrency)
	defer client.CloseIdleConnections()
	get := func(base string, path func(i int) string) func(ctx context.Context, i int) (*http.Request, error) {
		return func(ctx context.Context, i int) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, base+path(i), nil)
		}
	}

	// The plain handler runs before and after ours and the faster run
	// counts, so that a burst of other work on a shared machine during the
	// plain phase cannot flatter the ratios.
	plainRun := func() error {
		t.logf("web: plain hello handler")
		p, err := load(ctx, client, opt.Concurrency, n, opt.MaxTime, http.StatusOK, get(plain, func(int) string { return "/" }))
		if err != nil {
			return fmt.Errorf("bench web: plain: %w", err)
		}
		if p.failed > 0 {
			return fmt.Errorf("bench web: plain: %d failed: %s", p.failed, p.firstFailure)
		}
		res.PlainRuns = append(res.PlainRuns, p.rps())
		if p.rps() > res.PlainRPS {
			res.PlainRPS, res.PlainP99, res.PlainCPU = p.rps(), ms(p.p99), p.cpuPerRequest()
		}
		return nil
	}
	if err := plainRun(); err != nil {
		return res, err
	}

	// redisCPU reads the Redis servers' CPU time before a phase and
	// returns what the phase cost them per request answered.
	redisCPU := func(phase string) func(requests int) float64 {
		before, err := t.Store.ServerCPU(ctx)
		return func(requests int) float64 {
			after, err2 := t.Store.ServerCPU(ctx)
			if err := errors.Join(err, err2); err != nil {
				t.logf("web: %s: Redis CPU not measured: %v", phase, err)
				return 0
			}
			return microsEach(after-before, requests)
		}
	}

	t.logf("web: GET landing pages")
	landingRedis := redisCPU("landing")
	if opt.LandingCPUProfile != nil {
		if err := pprof.StartCPUProfile(opt.LandingCPUProfile); err != nil {
			return res, fmt.Errorf("cpu profile: %w", err)
		}
	}
	l, err := load(ctx, client, opt.Concurrency, n, opt.MaxTime, http.StatusOK, get(ours, func(i int) string { return "/c/" + tokens[i%n] }))
	if opt.LandingCPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return res, fmt.Errorf("bench web: landing: %w", err)
	}
	res.LandingRPS, res.LandingP99, res.LandingP50, res.LandingCPU = l.rps(), ms(l.p99), ms(l.p50), l.cpuPerRequest()
	res.LandingRedisCPU = landingRedis(l.requests)
	res.LandingFailed, res.FirstFailure = l.failed, l.firstFailure

	t.logf("web: POST confirmations")
	body := "choice=confirm"
	confirmRedis := redisCPU("confirm")
	if opt.CPUProfile != nil {
		if err := pprof.StartCPUProfile(opt.CPUProfile); err != nil {
			return res, fmt.Errorf("cpu profile: %w", err)
		}
	}
	cf, err := load(ctx, client, opt.Concurrency, n, opt.MaxTime, http.StatusOK, func(ctx context.Context, i int) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ours+"/c/"+tokens[i], strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req, err
	})
	if opt.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return res, fmt.Errorf("bench web: confirm: %w", err)
	}
	res.ConfirmRPS, res.ConfirmP99, res.ConfirmP50, res.ConfirmCPU = cf.rps(), ms(cf.p99), ms(cf.p50), cf.cpuPerRequest()
	res.ConfirmRedisCPU = confirmRedis(cf.requests)
	res.ConfirmFailed = cf.failed
	if res.FirstFailure == "" {
		res.FirstFailure = cf.firstFailure
	}
	if cf.failed > 0 {
		t.logf("web: %d of %d confirmations failed; first: %s", cf.failed, cf.failed+cf.requests, cf.firstFailure)
	}

	if err := plainRun(); err != nil {
		return res, err
	}

	stats, err := st.Stats(ctx, c.ID)
	if err != nil {
		return res, err
	}
	res.Confirmed = stats.Counts[repermit.StateConfirmed]
	if res.Confirmed != int64(cf.requests) {
		return res, fmt.Errorf("bench web: %d confirmations answered 200 but the campaign counts %d confirmed", cf.requests, res.Confirmed)
	}
	res.LandingRatio = ratio(res.LandingRPS, res.PlainRPS)
	res.ConfirmRatio = ratio(res.ConfirmRPS, res.PlainRPS)
	return res, nil
}
