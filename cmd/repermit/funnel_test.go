package main

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit/demo"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/token"
	"github.com/repermit/repermit/web"
)

// TestStatusAdminAndDemoPrintTheSameFunnel runs the demo, compressed,
// against a Redis that outlives it, then reads its campaign with `status`,
// `status --json` and the admin page: mailed, answered and the rates are
// the same figures everywhere.
func TestStatusAdminAndDemoPrintTheSameFunnel(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs a whole campaign (about 6s)")
	}
	t.Parallel()
	r := redistest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	_, err := demo.Run(ctx, demo.Config{
		Recipients: 40, RedisURL: r.URL, Prefix: r.Prefix,
		Deadline: 5 * time.Second, Reminder: 2 * time.Second, MaxPause: 500 * time.Millisecond,
		Out: &out,
	})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	summary := func(text string) string {
		t.Helper()
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "mailed ") {
				return line
			}
		}
		t.Fatalf("no funnel summary in:\n%s", text)
		return ""
	}
	demoLine := summary(out.String())

	cli := newCLI(t, r)
	code, statusOut, errOut := cli.run("status", demo.CampaignID)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	if got := summary(statusOut); got != demoLine {
		t.Errorf("status says\n  %s\nthe demo said\n  %s", got, demoLine)
	}
	code, jsonOut, errOut := cli.run("status", "--json", demo.CampaignID)
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, errOut)
	}
	var js statusJSON
	if err := json.Unmarshal([]byte(jsonOut), &js); err != nil {
		t.Fatal(err)
	}
	f := js.Funnel
	if f.Summary() != demoLine {
		t.Errorf("status --json funnel %+v reads %q, the demo said %q", f, f.Summary(), demoLine)
	}
	// The demo mails, bounces, confirms and declines some, and keeps some
	// unreached or suppressed: figures that a wrong definition would mix.
	if f.Mailed == 0 || f.Confirmed == 0 || f.Answered <= f.Confirmed || f.Mailed >= f.Imported {
		t.Errorf("the demo's campaign does not tell the figures apart: %+v", f)
	}

	signer, err := token.NewSigner([][]byte{[]byte(strings.Repeat("s", 32))})
	if err != nil {
		t.Fatal(err)
	}
	const adminToken = "an admin token of at least thirty-two bytes"
	srv, err := web.New(web.Config{Store: redisstore.New(r.Client, r.Prefix), Signer: signer, AdminToken: adminToken,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/admin/campaigns/"+demo.CampaignID, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("admin page: %d %s", w.Code, w.Body)
	}
	page := html.UnescapeString(w.Body.String())
	pct := func(p float64) string { return strconv.FormatFloat(p, 'f', 1, 64) + " %" }
	for _, want := range []string{
		"<dt>Mailed</dt><dd>" + strconv.FormatInt(f.Mailed, 10) + "</dd>",
		"<dt>Confirmed</dt><dd>" + strconv.FormatInt(f.Confirmed, 10) + "</dd>",
		"<dt>Re-permitted</dt><dd>" + pct(f.ConfirmationRate) + "</dd>",
		"Of the recipients mailed, " + pct(f.AnswerRate) + " answered and " + pct(f.MailedConfirmationRate) + " confirmed.",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("admin page lacks %q (the demo said %q)", want, demoLine)
		}
	}
}
