package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/demo"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/smtpsink"
)

// TestATokenWorksOnlyInItsOwnDeployment launches the same campaign (same
// id, same sequence number, same recipients) under two prefixes of one
// Redis with one REPERMIT_SECRET, lets deployment A's worker mail it, and
// posts A's decline link to deployment B's web server: B must answer 404
// and keep its recipient, while A's own server takes the answer.
func TestATokenWorksOnlyInItsOwnDeployment(t *testing.T) {
	r := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink, err := smtpsink.Start(ctx, smtpsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dir := writeFiles(t, map[string]string{"campaign.yaml": fmt.Sprintf(campaignYAML, "same"), "recipients.csv": "email\nvictim@example.com\n"})
	deployment := func(prefix string) (*cli, *redisstore.Store) {
		c := newCLI(t, r)
		c.env["REPERMIT_PREFIX"] = prefix
		c.env["REPERMIT_SMTP_URL"] = sink.URL()
		if code, _, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 {
			t.Fatalf("launch under %s: exit %d: %s", prefix, code, errOut)
		}
		st := redisstore.New(r.Client, prefix)
		t.Cleanup(func() { deleteKeys(t, r, prefix) })
		return c, st
	}
	a, stA := deployment(r.Prefix + "a")
	b, stB := deployment(r.Prefix + "b")
	campA, _ := stA.Campaign(ctx, "same")
	campB, _ := stB.Campaign(ctx, "same")
	if campA.Seq != campB.Seq {
		t.Fatalf("sequence numbers %d and %d differ; the test needs them equal", campA.Seq, campB.Seq)
	}

	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() { defer close(wdone); a.runContext(wctx, "worker") }()
	if err := sink.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	wcancel()
	<-wdone
	links, err := demo.ParseLinks(sink.Messages()[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(links.Confirm)
	if err != nil {
		t.Fatal(err)
	}
	path := u.Path

	decline := func(c *cli) int {
		addr := freeTCPAddr(t)
		c.env["REPERMIT_HTTP_ADDR"] = addr
		startWeb(t, c, "http://"+addr, http.DefaultClient)
		resp, err := http.PostForm("http://"+addr+path, url.Values{"choice": {"decline"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := decline(b); code != http.StatusNotFound {
		t.Errorf("A's decline link on B: %d, want 404", code)
	}
	if rec, err := stB.Recipient(ctx, "same", 0); err != nil || rec.State != repermit.StatePending || rec.Email != "victim@example.com" {
		t.Errorf("B's recipient after A's link: %+v, %v; want pending with its address", rec, err)
	}
	if code := decline(a); code != http.StatusOK {
		t.Errorf("A's decline link on A: %d, want 200", code)
	}
}

func deleteKeys(t *testing.T, r *redistest.Redis, prefix string) {
	t.Helper()
	ctx := context.Background()
	for _, pat := range []string{prefix + ":*", "asynq:{" + prefix + "}:*"} {
		iter := r.Client.Scan(ctx, 0, pat, 1000).Iterator()
		for iter.Next(ctx) {
			r.Client.Del(ctx, iter.Val())
		}
	}
}
