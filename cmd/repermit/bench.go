package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/repermit/repermit/app"
	"github.com/repermit/repermit/bench"
	"github.com/repermit/repermit/redisstore"
)

// runBench measures one hot path beside its baseline, in the same run. It
// writes only under a fresh "bench-…" prefix and deletes that afterwards.
func runBench(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 {
		return usageError("bench: want send, import, expire, web or list")
	}
	sub, args := args[0], args[1:]
	if sub == "list" {
		return runBenchList(env, args)
	}
	fs := flag.NewFlagSet("bench "+sub, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the figures as one JSON object")
	shapeName := fs.String("shape", string(bench.ShapeRealistic), fmt.Sprintf("what the generated list looks like: one of %v (see package bench)", bench.Shapes))
	var run func(context.Context, bench.Target) (any, error)
	switch sub {
	case "send":
		n := fs.Int("recipients", 100000, "recipients to mail")
		c := fs.Int("connections", bench.DefaultConnections, "SMTP connections, for the baseline and the worker's pool")
		timeout := fs.Duration("timeout", 10*time.Minute, "bound of each phase")
		profile := fs.String("cpuprofile", "", "write a CPU profile of the engine phase to `FILE`")
		run = func(ctx context.Context, t bench.Target) (any, error) {
			opt := bench.SendOptions{Recipients: *n, Connections: *c, Timeout: *timeout}
			f, err := createProfile("bench send", *profile)
			if err != nil {
				return nil, err
			}
			if f != nil {
				defer f.Close()
				opt.CPUProfile = f
			}
			return bench.Send(ctx, t, opt)
		}
	case "import":
		n := fs.Int("rows", 1000000, "CSV rows to launch")
		run = func(ctx context.Context, t bench.Target) (any, error) { return bench.Import(ctx, t, *n) }
	case "expire":
		n := fs.Int("recipients", 1000000, "recipients to expire")
		run = func(ctx context.Context, t bench.Target) (any, error) { return bench.Expire(ctx, t, *n) }
	case "web":
		c := fs.Int("concurrency", 16, "client workers")
		n := fs.Int("requests", 20000, "requests per phase (and recipients to confirm)")
		maxTime := fs.Duration("max-time", 20*time.Second, "bound of each phase")
		profile := fs.String("cpuprofile", "", "write a CPU profile of the confirm phase to `FILE`")
		landingProfile := fs.String("landing-cpuprofile", "", "write a CPU profile of the landing phase to `FILE`")
		run = func(ctx context.Context, t bench.Target) (any, error) {
			opt := bench.WebOptions{Concurrency: *c, Requests: *n, MaxTime: *maxTime}
			f, err := createProfile("bench web", *profile)
			if err != nil {
				return nil, err
			}
			if f != nil {
				defer f.Close()
				opt.CPUProfile = f
			}
			lf, err := createProfile("bench web", *landingProfile)
			if err != nil {
				return nil, err
			}
			if lf != nil {
				defer lf.Close()
				opt.LandingCPUProfile = lf
			}
			return bench.Web(ctx, t, opt)
		}
	default:
		return usageError("bench: unknown benchmark %q; want send, import, expire, web or list", sub)
	}
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	shape, err := bench.ParseShape(*shapeName)
	if err != nil {
		return usageError("bench %s: --shape: %v", sub, err)
	}

	st, closeStore, err := benchStore(ctx, env)
	if err != nil {
		return err
	}
	defer closeStore()
	t := bench.Target{Store: st, Prefix: bench.NewPrefix(), Log: env.Stderr, Shape: shape}
	res, err := run(ctx, t)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	return printBench(env, sub, res)
}

// runBenchList writes a generated list and its campaign file without
// touching Redis, so that `repermit launch` itself can be measured
// (`/usr/bin/time -v repermit launch DIR/campaign.yaml`).
func runBenchList(env Env, args []string) error {
	fs := flag.NewFlagSet("bench list", flag.ContinueOnError)
	n := fs.Int("rows", 1000000, "CSV rows to write")
	id := fs.String("id", "bench-list", "the campaign's id")
	shapeName := fs.String("shape", string(bench.ShapeRealistic), fmt.Sprintf("what the generated list looks like: one of %v (see package bench)", bench.Shapes))
	waves := fs.Bool("waves", false, "send the campaign in waves (waves: {pilot: 1000, grow: 4, observe: 1h})")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	shape, err := bench.ParseShape(*shapeName)
	if err != nil {
		return usageError("bench list: --shape: %v", err)
	}
	if err := os.MkdirAll(pos[0], 0o755); err != nil {
		return fmt.Errorf("bench list: %w", err)
	}
	path, err := bench.WriteList(pos[0], *id, *n, shape, *waves)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s and its %d-row recipients.csv\n", path, *n)
	return nil
}

// createProfile creates the --cpuprofile file, or returns nil without one.
func createProfile(cmd, path string) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, usageError("%s: --cpuprofile: %v", cmd, err)
	}
	return f, nil
}

// benchStore connects to REPERMIT_REDIS_URL, or starts an in-process
// miniredis when it is unset; the figures then say little about a real
// deployment, so stderr says so.
func benchStore(ctx context.Context, env Env) (*redisstore.Store, func(), error) {
	s := env.settings()
	if s.RedisURL == "" {
		fmt.Fprintln(env.Stderr, "bench: REPERMIT_REDIS_URL is unset; using an embedded miniredis, far slower than a real Redis")
	}
	a, err := app.New(ctx, app.Settings{RedisURL: s.RedisURL, EmbeddedRedis: s.RedisURL == "", Prefix: s.Prefix})
	if err != nil {
		return nil, nil, err
	}
	return a.Store, a.Close, nil
}

func printBench(env Env, sub string, res any) error {
	w := env.Stdout
	switch r := res.(type) {
	case bench.SendResult:
		fmt.Fprintf(w, "send %d mails over %d connections to a discarding SMTP sink\n", r.Recipients, r.Connections)
		fmt.Fprintf(w, "  baseline (go-mail loop)   %8.0f msg/s  (%.2f s; runs before and after the engine: %v)\n", r.BaselineMPS, r.BaselineS, r.BaselineRuns)
		fmt.Fprintf(w, "  engine (worker)           %8.0f msg/s  (%.2f s)  ratio %.3f\n", r.EngineMPS, r.EngineS, r.Ratio)
		fmt.Fprintf(w, "  launch                    %8.2f s     engine incl. launch %.0f msg/s\n", r.LaunchS, r.EngineTotalMPS)
		fmt.Fprintf(w, "  Redis per recipient       %8.1f bytes\n", r.BytesPerRecipient)
		fmt.Fprintf(w, "  delivered                 %8d (sink)  %d (counted sent)\n", r.SinkAccepted, r.SentCounted)
	case bench.ImportResult:
		fmt.Fprintf(w, "import %d CSV rows\n", r.Rows)
		fmt.Fprintf(w, "  baseline (pipelined HSET) %8.0f rows/s  %6.1f bytes/recipient\n", r.BaselineRowsPerS, r.BaselineBytesPerRecipient)
		fmt.Fprintf(w, "  launch                    %8.0f rows/s  %6.1f bytes/recipient  (%.2f s)  ratio %.3f\n", r.RowsPerS, r.BytesPerRecipient, r.Seconds, r.Ratio)
		fmt.Fprintf(w, "  list (%s)           mean packed row %.1f B, %.1f %% over 64 B, %d domains, %.1f %% gmail.com, rows by extra columns filled %v\n",
			r.Shape, r.ListStats.MeanPackedBytes, r.ListStats.OverListpackPct, r.ListStats.Domains, r.ListStats.GmailPct, r.ListStats.ExtraColumns)
		fmt.Fprintf(w, "  bucket encodings          %v   used_memory delta %.1f bytes/recipient\n", r.BucketEncodings, r.UsedMemoryPerRecipient)
	case bench.ExpireResult:
		fmt.Fprintf(w, "expire %d recipients\n", r.Recipients)
		fmt.Fprintf(w, "  baseline (pipelined HSET) %8.0f /s  (%.2f s)\n", r.BaselinePerS, r.BaselineSecs)
		fmt.Fprintf(w, "  expiry                    %8.0f /s  (%.2f s)  ratio %.3f\n", r.ExpiredPerS, r.Seconds, r.Ratio)
		fmt.Fprintf(w, "  Redis per recipient       %8.1f bytes before, %.1f after (%s list); used_memory delta %.1f; buckets after %v\n",
			r.BytesBefore, r.BytesAfter, r.Shape, r.UsedMemoryDelta, r.BucketEncodings)
	case bench.WebResult:
		fmt.Fprintf(w, "web, %d concurrent keep-alive clients\n", r.Concurrency)
		fmt.Fprintf(w, "  plain net/http hello      %8.0f req/s  p99 %.2f ms              CPU %.0f µs/req\n", r.PlainRPS, r.PlainP99, r.PlainCPU)
		fmt.Fprintf(w, "  GET /c/TOKEN landing      %8.0f req/s  p99 %.2f ms  ratio %.3f  CPU %.0f µs/req, Redis %.0f\n", r.LandingRPS, r.LandingP99, r.LandingRatio, r.LandingCPU, r.LandingRedisCPU)
		fmt.Fprintf(w, "  POST /c/TOKEN confirm     %8.0f req/s  p99 %.2f ms  ratio %.3f  CPU %.0f µs/req, Redis %.0f\n", r.ConfirmRPS, r.ConfirmP99, r.ConfirmRatio, r.ConfirmCPU, r.ConfirmRedisCPU)
		if r.LandingFailed+r.ConfirmFailed > 0 {
			fmt.Fprintf(w, "  FAILED: %d landing, %d confirm requests; first: %s\n", r.LandingFailed, r.ConfirmFailed, r.FirstFailure)
		}
	default:
		return fmt.Errorf("bench %s: no printer for %T", sub, res)
	}
	return nil
}
