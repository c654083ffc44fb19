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

	c := newCLI(t, r)
	c.env["REPERMIT_SMTP_URL"] = sink.URL()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if code, _, errOut := c.runContext(ctx, "serve", "--addr", addr); code != 0 {
			t.Errorf("serve: exit %d: %s", code, errOut)
		}
	}()
	defer wg.Wait()
	defer cancel()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
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
