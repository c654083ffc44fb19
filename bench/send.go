package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/pprof"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/app"
	"github.com/repermit/repermit/launch"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
	"github.com/repermit/repermit/worker"
)

// DefaultConnections is the SMTP connections of bench send. On a 2-core
// machine a discarding sink is near its plateau at 8 (the design's figures:
// 6.9k msg/s on one, 11k on 16), and 8 is a sensible pool for a real relay.
const DefaultConnections = 8

// SendOptions tune Send. Zero values mean the defaults.
type SendOptions struct {
	Recipients  int // default 100000
	Connections int // default DefaultConnections
	// Timeout bounds each phase; default 10 minutes.
	Timeout time.Duration
	// CPUProfile, if set, receives a CPU profile of the engine phase.
	CPUProfile io.Writer
}

// SendResult is the outcome of Send; the JSON keys are a contract.
type SendResult struct {
	Recipients  int     `json:"recipients"`
	Connections int     `json:"connections"`
	BaselineMPS float64 `json:"baseline_msgs_per_s"`
	EngineMPS   float64 `json:"engine_msgs_per_s"`
	Ratio       float64 `json:"ratio"`
	LaunchS     float64 `json:"launch_s"`
	// EngineS is from the worker's start to the sink's last accepted mail;
	// EngineTotalMPS counts the launch in as well.
	EngineS        float64 `json:"engine_s"`
	EngineTotalMPS float64 `json:"engine_total_msgs_per_s"`
	BaselineS      float64 `json:"baseline_s"`
	// BaselineRuns are both baseline runs; BaselineMPS is the faster.
	BaselineRuns      []float64 `json:"baseline_runs_msgs_per_s"`
	BytesPerRecipient float64   `json:"redis_bytes_per_recipient"`
	// SinkAccepted is what the engine's sink received, SentCounted what the
	// campaign's counts say was sent; both must equal Recipients.
	SinkAccepted int   `json:"sink_accepted"`
	SentCounted  int64 `json:"sent_counted"`
	// BaselineCPU and EngineCPU are this process's CPU time per mail, in
	// µs, the SMTP sink's included (it runs in the process in both
	// phases); BaselineCPU is of the faster baseline run. EngineRedisCPU
	// is the Redis server's per mail during the engine phase (INFO cpu;
	// 0 where not measured). Other work on the machine slows the rates
	// but adds little to these, so they compare builds better.
	BaselineCPU    float64 `json:"baseline_cpu_us"`
	EngineCPU      float64 `json:"engine_cpu_us"`
	EngineRedisCPU float64 `json:"engine_redis_cpu_us"`
}

func (o *SendOptions) defaults() {
	if o.Recipients <= 0 {
		o.Recipients = 100000
	}
	if o.Connections <= 0 {
		o.Connections = DefaultConnections
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
}

// Send measures mails per second through the whole engine against a plain
// go-mail loop, both to an in-process SMTP sink that discards.
//
// Baseline: Connections goroutines, each with its own go-mail client and
// connection, send N messages built beforehand (with the campaign's own
// templates, so both sides put the same bytes on the wire) in a loop. It
// runs before and after the engine; the faster run is the baseline.
//
// Engine: launch.Launch of an N-row CSV, then a worker.Server with a pool
// of Connections until the sink has accepted all N: feed tasks, send tasks,
// claim, render, sign, SMTP and mark-sent for every recipient.
func Send(ctx context.Context, t Target, opt SendOptions) (SendResult, error) {
	opt.defaults()
	if err := t.check(); err != nil {
		return SendResult{}, err
	}
	defer t.cleanup()
	n, conns := opt.Recipients, opt.Connections
	res := SendResult{Recipients: n, Connections: conns}

	// The baseline's messages carry links of the same length as the
	// engine's; the engine signs its own with this secret, bound to the
	// bench's deployment.
	secret := newSecret()
	signer, err := token.NewSigner([][]byte{[]byte(secret)})
	if err != nil {
		return res, err
	}

	// The baseline runs before and after the engine and the faster run
	// counts: on a shared machine a burst of other work in one phase must
	// not flatter the engine.
	baseline := func() error {
		t.logf("send: baseline, building %d messages", n)
		msgs, err := buildMessages(signer, n, t.shape())
		if err != nil {
			return err
		}
		t.logf("send: baseline, go-mail loop over %d connections", conns)
		cpu0 := processCPU()
		d, err := baselineSend(ctx, msgs, conns, opt.Timeout)
		if err != nil {
			return err
		}
		cpu := processCPU() - cpu0
		res.BaselineRuns = append(res.BaselineRuns, rate(n, d))
		if r := rate(n, d); r > res.BaselineMPS {
			res.BaselineMPS, res.BaselineS = r, round(d.Seconds())
			res.BaselineCPU = microsEach(cpu, n)
		}
		return nil
	}
	if err := baseline(); err != nil {
		return res, err
	}
	d, err := engineSend(ctx, t, secret, opt, &res)
	if err != nil {
		return res, err
	}
	if err := baseline(); err != nil {
		return res, err
	}
	res.EngineS = round(d.Seconds())
	res.EngineMPS = rate(n, d)
	res.EngineTotalMPS = rate(n, d+time.Duration(res.LaunchS*float64(time.Second)))
	res.Ratio = ratio(res.EngineMPS, res.BaselineMPS)
	return res, nil
}

// engineSend launches the campaign and runs a worker until the sink has
// every mail; it returns the time from the worker's start to the last mail.
func engineSend(ctx context.Context, t Target, secret string, opt SendOptions, res *SendResult) (time.Duration, error) {
	n := opt.Recipients
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "repermit-bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	path, err := campaignFiles(dir, "bench-send", n, "30d", t.shape())
	if err != nil {
		return 0, err
	}
	st := t.store(t.Prefix)
	logOut := io.Discard
	if t.Log != nil {
		logOut = t.Log
	}
	// The application as `repermit worker` builds it, on the bench's store
	// and a discarding in-process SMTP sink; the sink starts before the
	// launch, the worker after it.
	a, err := app.New(ctx, app.Settings{
		Store:        st,
		Secret:       secret,
		EmbeddedSMTP: &smtpsink.Options{Discard: true},
		Worker:       &worker.Config{Queue: t.Prefix, PoolSize: opt.Connections},
		Logger:       slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return 0, fmt.Errorf("bench send: %w", err)
	}
	defer a.Close()
	sink, w := a.Sink, a.Worker

	t.logf("send: engine, launching %d recipients", n)
	start := time.Now()
	rep, err := launch.Launch(ctx, path, st, a.Scheduler(), launch.Options{})
	if err != nil {
		return 0, fmt.Errorf("bench send: %w", err)
	}
	res.LaunchS = round(time.Since(start).Seconds())
	if rep.Imported != int64(n) {
		return 0, fmt.Errorf("bench send: launch imported %d of %d", rep.Imported, n)
	}
	mem, err := t.memoryUnder(ctx, t.Prefix+":*")
	if err != nil {
		return 0, err
	}
	res.BytesPerRecipient = round(float64(mem) / float64(n))

	t.logf("send: engine, worker with %d connections", opt.Connections)
	if opt.CPUProfile != nil {
		if err := pprof.StartCPUProfile(opt.CPUProfile); err != nil {
			return 0, fmt.Errorf("cpu profile: %w", err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	redis0, redisErr := t.Store.ServerCPU(ctx)
	cpu0 := processCPU()
	start = time.Now()
	go func() { done <- w.Run(runCtx) }()
	waitErr := waitWithProgress(ctx, t, sink, n)
	d := time.Since(start)
	res.EngineCPU = microsEach(processCPU()-cpu0, n)
	if redis1, err := t.Store.ServerCPU(ctx); err == nil && redisErr == nil {
		res.EngineRedisCPU = microsEach(redis1-redis0, n)
	} else {
		t.logf("send: Redis CPU not measured: %v", errors.Join(redisErr, err))
	}
	if opt.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	stop()
	runErr := <-done
	if waitErr != nil {
		return 0, fmt.Errorf("bench send: engine: %w", waitErr)
	}
	if runErr != nil {
		return 0, fmt.Errorf("bench send: worker: %w", runErr)
	}
	res.SinkAccepted = sink.Count()
	stats, err := st.Stats(ctx, "bench-send")
	if err != nil {
		return 0, err
	}
	res.SentCounted = stats.Counts[repermit.StateSent]
	if res.SinkAccepted != n || res.SentCounted != int64(n) {
		return 0, fmt.Errorf("bench send: the sink accepted %d mails and the campaign counts %d sent, want %d each",
			res.SinkAccepted, res.SentCounted, n)
	}
	return d, nil
}

// microsEach is cpu spread over n mails or requests, in µs to a tenth.
func microsEach(cpu time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return math.Round(float64(cpu.Microseconds())/float64(n)*10) / 10
}

// waitWithProgress waits for n mails at the sink, logging the count every
// five seconds.
func waitWithProgress(ctx context.Context, t Target, sink *smtpsink.Sink, n int) error {
	done := make(chan error, 1)
	go func() { done <- sink.WaitFor(ctx, n) }()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			t.logf("send: engine, %d of %d accepted", sink.Count(), n)
		}
	}
}
