package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one load run measured. Rates and latencies count
// only the answers with the wanted status: a fast error page is no page.
type loadResult struct {
	requests int // answered with the wanted status
	failed   int // answered with another status
	elapsed  time.Duration
	p50, p99 time.Duration
	// cpu is the CPU time the whole process (client and server) used
	// during the run.
	cpu time.Duration
	// firstFailure describes the first answer with another status.
	firstFailure string
}

func (r loadResult) rps() float64 { return rate(r.requests, r.elapsed) }

// cpuPerRequest is the process's CPU time per answered request in µs, 0
// when it was not measured. On a machine shared with other work it moves
// far less than the rates do: it counts only this process's own work.
func (r loadResult) cpuPerRequest() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return microsEach(r.cpu, r.requests)
}

// load sends up to count requests from workers goroutines over one
// keep-alive client, stopping early when maxTime has passed. An answer with
// another status than want is counted as failed; a transport error ends
// the run with that error. newReq builds request i.
func load(ctx context.Context, client *http.Client, workers, count int, maxTime time.Duration, want int, newReq func(ctx context.Context, i int) (*http.Request, error)) (loadResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(maxTime)
	var next, failed atomic.Int64
	var firstFailure atomic.Pointer[string]
	lat := make([][]time.Duration, workers)
	var firstErr atomic.Pointer[error]
	fail := func(err error) {
		// Only the first error is the cause; the others are the
		// cancellation it triggers.
		firstErr.CompareAndSwap(nil, &err)
		cancel()
	}
	var wg sync.WaitGroup
	cpu0 := processCPU()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			ds := make([]time.Duration, 0, count/workers+1)
			defer func() { lat[w] = ds }()
			for {
				i := int(next.Add(1) - 1)
				if i >= count || ctx.Err() != nil || time.Now().After(deadline) {
					return
				}
				req, err := newReq(ctx, i)
				if err != nil {
					fail(err)
					return
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					fail(fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err))
					return
				}
				// Read to the end so the connection is reused.
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if err != nil {
					fail(fmt.Errorf("%s %s: read body: %w", req.Method, req.URL.Path, err))
					return
				}
				if resp.StatusCode != want {
					failed.Add(1)
					msg := fmt.Sprintf("%s %s: status %d, want %d", req.Method, req.URL.Path, resp.StatusCode, want)
					firstFailure.CompareAndSwap(nil, &msg)
					continue
				}
				ds = append(ds, d)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	if err := firstErr.Load(); err != nil {
		return loadResult{}, *err
	}
	var all []time.Duration
	for _, ds := range lat {
		all = append(all, ds...)
	}
	r := loadResult{failed: int(failed.Load())}
	if f := firstFailure.Load(); f != nil {
		r.firstFailure = *f
	}
	if len(all) == 0 {
		return r, fmt.Errorf("no request succeeded within %s (%d failed, first: %s)", maxTime, r.failed, r.firstFailure)
	}
	return loadResult{
		failed:       r.failed,
		firstFailure: r.firstFailure,
		requests:     len(all),
		elapsed:      elapsed,
		cpu:          cpu,
		p50:          percentile(all, 50),
		p99:          percentile(all, 99),
	}, nil
}

// newClient returns a keep-alive client that holds a connection per worker.
func newClient(workers int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers,
		IdleConnTimeout:     time.Minute,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// serve runs h on 127.0.0.1 on a free port until the returned stop is
// called, and returns its base URL.
func serve(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
