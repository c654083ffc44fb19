package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/repermit/repermit/demo"
)

// runDemo runs the whole engine embedded on a sample campaign; with
// REPERMIT_REDIS_URL or REPERMIT_SMTP_URL set it uses those servers instead
// of the embedded ones (see package demo). It ignores REPERMIT_PREFIX: the
// demo keeps its keys under a fresh prefix of its own, so that it can never
// meet a real campaign, and prints it.
func runDemo(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	n := fs.Int("recipients", 200, "size of the simulated list")
	keep := fs.Bool("keep", false, "keep the web server running after the funnel, with a link to try, until Ctrl-C")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if *n < 1 || *n > 1_000_000 {
		return usageError("demo: --recipients must be between 1 and 1000000, not %d", *n)
	}
	_, err := demo.Run(ctx, demo.Config{
		Recipients: *n,
		Keep:       *keep,
		RedisURL:   env.Getenv("REPERMIT_REDIS_URL"),
		SMTPURL:    env.Getenv("REPERMIT_SMTP_URL"),
		Secret:     env.Getenv("REPERMIT_SECRET"),
		HTTPAddr:   env.Getenv("REPERMIT_HTTP_ADDR"),
		Out:        env.Stdout,
		// The progress lines tell the story; the log only what went wrong.
		Logger: slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	return err
}
