package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/token"
)

// The three benchmarks go through a real HTTP server and client on
// loopback, so that BenchmarkPlain is the ceiling the others compare to.

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
}

func BenchmarkPlain(b *testing.B) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello\n")
	}))
	defer ts.Close()
	runGets(b, benchClient(), func(int64) string { return ts.URL + "/" })
}

// benchServer launches a campaign of n pending recipients.
func benchServer(b *testing.B, n int) (*httptest.Server, *token.Signer, repermit.Campaign) {
	b.Helper()
	r := redistest.New(b)
	store := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	c := repermit.Campaign{ID: "bench", From: "ACME News <news@acme.example>", Subject: "ACME News",
		StartAt: t0, Deadline: t0.Add(24 * time.Hour), Topics: []string{"yoga", "events"}}
	imp, err := store.BeginImport(ctx, c, t0)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := imp.Add(ctx, fmt.Sprintf("r%d@example.com", i), "", "en", nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Imported: int64(n)}); err != nil {
		b.Fatal(err)
	}
	signer, _ := token.NewSigner([][]byte{[]byte("0123456789abcdef0123456789abcdef-bench")})
	srv, err := New(Config{
		Store: store, Signer: signer, Logger: discardLogger(), Registry: prometheus.NewRegistry(),
		Now: func() time.Time { return t0.Add(time.Hour) }, RatePerSecond: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(ts.Close)
	return ts, signer, imp.Campaign()
}

func BenchmarkLanding(b *testing.B) {
	const n = 1000
	ts, signer, c := benchServer(b, n)
	links := make([]string, n)
	for i := range links {
		links[i] = ts.URL + "/c/" + signer.Sign(token.Claims{Purpose: token.Confirm, Campaign: c.ID, CampaignSeq: c.Seq, Recipient: uint32(i), Deadline: c.Deadline})
	}
	runGets(b, benchClient(), func(i int64) string { return links[i%n] })
}

func runGets(b *testing.B, client *http.Client, link func(int64) string) {
	b.Helper()
	var next, failed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(link(next.Add(1)))
			if err != nil {
				failed.Add(1)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d requests failed", f, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkConfirm posts one confirm per recipient, each a real state
// change and ledger append (a replay would be a cheaper read).
func BenchmarkConfirm(b *testing.B) {
	ts, signer, c := benchServer(b, b.N)
	links := make([]string, b.N)
	for i := range links {
		links[i] = ts.URL + "/c/" + signer.Sign(token.Claims{Purpose: token.Confirm, Campaign: c.ID, CampaignSeq: c.Seq, Recipient: uint32(i), Deadline: c.Deadline})
	}
	body := url.Values{"choice": {"confirm"}, "topic": {"yoga"}}.Encode()
	client := benchClient()
	var next, failed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			resp, err := client.Post(links[i], "application/x-www-form-urlencoded", strings.NewReader(body))
			if err != nil {
				failed.Add(1)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d confirms failed", f, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
