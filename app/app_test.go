package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/app"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/web"
	"github.com/repermit/repermit/worker"
)

var secret = strings.Repeat("s", 32)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestNewRefusesBadSettingsBeforeTouchingRedis: every case names a Redis
// nobody listens on, so an error other than EINVALID would mean New went
// to Redis before it checked its settings.
func TestNewRefusesBadSettingsBeforeTouchingRedis(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		s          app.Settings
	}{
		{"no secret for the web", "REPERMIT_SECRET", app.Settings{Web: &web.Config{}}},
		{"no secret for the worker", "REPERMIT_SECRET", app.Settings{Worker: &worker.Config{}, SMTPURL: "smtp://127.0.0.1:25"}},
		{"short secret", "REPERMIT_SECRET", app.Settings{Secret: "short", Web: &web.Config{}}},
		{"worker without SMTP", "REPERMIT_SMTP_URL", app.Settings{Secret: secret, Worker: &worker.Config{}}},
		{"bad SMTP URL", "REPERMIT_SMTP_URL", app.Settings{Secret: secret, Worker: &worker.Config{}, SMTPURL: "http://mail.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.RedisURL = "redis://127.0.0.1:1/0"
			a, err := app.New(context.Background(), tc.s)
			if err == nil {
				a.Close()
				t.Fatal("New accepted the settings")
			}
			if repermit.ErrorCode(err) != repermit.EINVALID || !strings.Contains(repermit.ErrorMessage(err), tc.want) {
				t.Errorf("error %v (code %s), want EINVALID naming %s", err, repermit.ErrorCode(err), tc.want)
			}
		})
	}
}

func TestNewNamesABadRedisURL(t *testing.T) {
	_, err := app.New(context.Background(), app.Settings{RedisURL: "redis://[::1/0"})
	if repermit.ErrorCode(err) != repermit.EINVALID || !strings.Contains(repermit.ErrorMessage(err), "REPERMIT_REDIS_URL") {
		t.Errorf("error %v, want EINVALID naming REPERMIT_REDIS_URL", err)
	}
}

// TestEmbeddedAppRunsUntilCancelled builds what the demo builds, runs it,
// finds the recipients' pages and /metrics on their own listeners, and
// stops it.
func TestEmbeddedAppRunsUntilCancelled(t *testing.T) {
	reg := newRegistry()
	a, err := app.New(context.Background(), app.Settings{
		EmbeddedRedis: true,
		Prefix:        "t-app",
		Secret:        secret,
		EmbeddedSMTP:  &smtpsink.Options{},
		Worker:        &worker.Config{},
		Web:           &web.Config{},
		Registry:      reg,
		Addr:          "127.0.0.1:0",
		AdminAddr:     "localhost:0", // not the same string as Addr: a listener of its own
		Logger:        quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.MiniRedis == nil || a.Sink == nil || a.Worker == nil || a.Web == nil || a.Signer == nil || a.Scheduler() == nil {
		t.Fatalf("parts missing: %+v", a)
	}
	if a.URL() == a.AdminURL() {
		t.Fatalf("one listener %s for an admin address of its own", a.URL())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	for _, tc := range []struct {
		url  string
		code int
		body string
	}{
		{a.URL() + "/healthz", 200, ""},
		{a.URL() + "/metrics", 404, ""},
		{a.AdminURL() + "/metrics", 200, "repermit_queue_tasks"},
	} {
		code, body := get(t, tc.url)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s: %d, want %d with %q:\n%.300s", tc.url, code, tc.code, tc.body, body)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	a.Close()
	if err := a.Store.Ping(context.Background()); err == nil {
		t.Error("the embedded Redis still answers after Close")
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
