package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/smtpsink"
)

func TestServeAnswersHealthAndMetricsOfBothHalves(t *testing.T) {
	r := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink, err := smtpsink.Start(ctx, smtpsink.Options{Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := ln.Addr().String()
	ln.Close()

	c := newCLI(t, r)
	c.env["REPERMIT_SMTP_URL"] = sink.URL()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if code, _, errOut := c.runContext(ctx, "serve", "--addr", addr, "--admin-addr", admin); code != 0 {
			t.Errorf("serve: exit %d: %s", code, errOut)
		}
	}()
	defer wg.Wait()
	defer cancel()

	get := func(path string) (int, string) {
		host := addr
		if path == "/metrics" || strings.HasPrefix(path, "/admin") {
			host = admin
		}
		resp, err := http.Get("http://" + host + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitUntil(t, 5*time.Second, "the web server", func() bool { code, _ := get("/healthz"); return code == http.StatusOK })
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{"repermit_mails_sent_total", "repermit_smtp_send_seconds", "repermit_http_requests_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, _ := get("/admin/campaigns"); code != http.StatusUnauthorized {
		t.Errorf("/admin without a token: %d, want 401", code)
	}
}

func TestServersRefuseToStartWithoutSecretOrSMTP(t *testing.T) {
	r := redistest.New(t)
	c := newCLI(t, r)
	delete(c.env, "REPERMIT_SECRET")
	if code, _, errOut := c.run("web"); code != 2 || !strings.Contains(errOut, "REPERMIT_SECRET") {
		t.Errorf("web without a secret: exit %d, %q", code, errOut)
	}
	c.env["REPERMIT_SECRET"] = "short"
	if code, _, errOut := c.run("web"); code != 2 || !strings.Contains(errOut, "REPERMIT_SECRET") {
		t.Errorf("web with a short secret: exit %d, %q", code, errOut)
	}
	c.env["REPERMIT_SECRET"] = strings.Repeat("k", 32)
	if code, _, errOut := c.run("worker"); code != 2 || !strings.Contains(errOut, "REPERMIT_SMTP_URL") {
		t.Errorf("worker without SMTP: exit %d, %q", code, errOut)
	}
}

func TestShortAdminTokenRefusesToStart(t *testing.T) {
	r := redistest.New(t)
	for _, cmd := range []string{"web", "serve"} {
		for _, tok := range []string{"Q", strings.Repeat("Q", 31)} {
			c := newCLI(t, r)
			c.env["REPERMIT_SMTP_URL"] = "smtp://127.0.0.1:1?tls=none"
			c.env["REPERMIT_ADMIN_TOKEN"] = tok
			// Before the check a server started with any token; the
			// timeout ends it then, with exit 0.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			code, _, errOut := c.runContext(ctx, cmd)
			cancel()
			if code != 2 || !strings.Contains(errOut, "REPERMIT_ADMIN_TOKEN") || strings.Contains(errOut, tok) {
				t.Errorf("%s with a %d-byte admin token: exit %d, %q; want 2 naming the variable, not the token", cmd, len(tok), code, errOut)
			}
		}
	}
}

// TestAdminAndMetricsListenOnTheirOwnAddress: /admin and /metrics answer
// on REPERMIT_ADMIN_ADDR only, not on the recipients' listener, unless
// both are the same address.
func TestAdminAndMetricsListenOnTheirOwnAddress(t *testing.T) {
	r := redistest.New(t)
	freeAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	get := func(addr, path string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+strings.Repeat("t", 32))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, same := range []bool{false, true} {
		pub := freeAddr()
		adm := freeAddr()
		if same {
			adm = pub
		}
		c := newCLI(t, r)
		c.env["REPERMIT_HTTP_ADDR"] = pub
		c.env["REPERMIT_ADMIN_ADDR"] = adm
		c.env["REPERMIT_ADMIN_TOKEN"] = strings.Repeat("t", 32)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { code, _, _ := c.runContext(ctx, "web"); done <- code }()
		waitUntil(t, 5*time.Second, "the web server", func() bool { return get(pub, "/healthz") == http.StatusOK && get(adm, "/healthz") == http.StatusOK })
		for _, path := range []string{"/admin/campaigns", "/metrics"} {
			if got := get(adm, path); got != http.StatusOK {
				t.Errorf("same=%v: %s on the admin address: %d, want 200", same, path, got)
			}
			want := http.StatusNotFound
			if same {
				want = http.StatusOK
			}
			if got := get(pub, path); got != want {
				t.Errorf("same=%v: %s on the recipients' address: %d, want %d", same, path, got, want)
			}
		}
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("web exit %d", code)
		}
	}
}

// TestWorkerRefusesBadWebhookTimings: a webhook interval or retry that is
// not a positive duration stops the worker with exit 2, naming the
// variable, before it starts.
func TestWorkerRefusesBadWebhookTimings(t *testing.T) {
	r := redistest.New(t)
	for _, tt := range []struct{ name, value string }{
		{"REPERMIT_WEBHOOK_INTERVAL", "5"},
		{"REPERMIT_WEBHOOK_RETRY", "-1s"},
		{"REPERMIT_WEBHOOK_RETRY_MAX", "0s"},
	} {
		c := newCLI(t, r)
		c.env["REPERMIT_SMTP_URL"] = "smtp://127.0.0.1:1?tls=none"
		c.env[tt.name] = tt.value
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		code, _, errOut := c.runContext(ctx, "worker")
		cancel()
		if code != 2 || !strings.Contains(errOut, tt.name) {
			t.Errorf("%s=%s: exit %d, %q; want 2 naming the variable", tt.name, tt.value, code, errOut)
		}
	}
}
