package demo

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/web"
	"github.com/repermit/repermit/worker"
)

// startEngine starts the worker and the web server, as `repermit serve`
// does, with the demo's compressed time.
func (e *engine) startEngine(ctx context.Context, ln net.Listener, smtp mailer.Config) error {
	w, err := worker.New(worker.Config{
		Store:  e.store,
		Signer: e.signer,
		SMTP:   smtp,
		Logger: e.cfg.Logger,
		// Seconds instead of days: a temporary failure is retried within
		// the demo's deadline.
		RetryBase:     time.Second,
		RetryMax:      4 * time.Second,
		DomainPenalty: 2 * time.Second,
		SweepInterval: 5 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	e.scheduler = w.Scheduler()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := w.Run(ctx); err != nil {
			e.errs <- fmt.Errorf("worker: %w", err)
		}
	}()

	h, err := web.New(web.Config{
		Store:  e.store,
		Signer: e.signer,
		Logger: e.cfg.Logger,
		// Every simulated recipient posts from 127.0.0.1; the per-client
		// limit would take them for one abusive client.
		RatePerSecond: -1,
		// miniredis is single-threaded; a large demo list answering at
		// once must not run into the 2s default.
		RequestTimeout: 10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	e.serve(ctx, ln, h)
	return nil
}
