package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redistest"
)

// dump reads every key under prefix into one comparable text: type,
// content, and whether it has a TTL.
func dump(t *testing.T, rdb redis.UniversalClient, prefix string) string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		fmt.Fprintf(&b, "%s (%s):", k, typ)
		var v any
		var err error
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			var m map[string]string
			m, err = rdb.HGetAll(ctx, k).Result()
			v = sortedMap(m)
		case "set":
			var m []string
			m, err = rdb.SMembers(ctx, k).Result()
			sort.Strings(m)
			v = m
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, k, "-", "+").Result()
		}
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		fmt.Fprintf(&b, " %v\n", v)
	}
	return b.String()
}

func sortedMap(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

var hrefRE = regexp.MustCompile(`href="([^"]+)"`)

// TestScannerChangesNothing lets a client that behaves like a mail
// security scanner fetch every link of every mail ten times: no recipient
// changes state and no key under the campaign's prefix changes.
func TestScannerChangesNothing(t *testing.T) {
	needReal(t)
	t.Parallel()
	r := redistest.New(t)
	mp := startMailpit(t)
	w := newWorld(t, r.URL, r.Prefix, mp.SMTPURL())
	w.startWeb()
	worker := w.start("worker", "worker")
	const id, n = "e2e-scan", 20
	path := w.writeCampaign(campaignSpec{ID: id, N: n, Deadline: "10m", Topics: []string{"news", "events"}})
	w.launch(path)
	w.waitStatus(id, time.Minute, "every recipient is mailed", func(s status) bool {
		return s.Counts[repermit.StateSent] == n
	})
	mp.WaitCount(n, 30*time.Second)
	// Nothing else may write while the scanner runs.
	worker.stop()

	var links []string
	for _, s := range mp.Messages() {
		m := mp.Message(s.ID)
		l := mailbox1(t, mp, s.ID)
		links = append(links, l.Confirm, l.Yes, l.No, l.Unsubscribe)
		for _, h := range hrefRE.FindAllStringSubmatch(m.HTML, -1) {
			// Only our own server's links: the controller's privacy policy
			// and other footer links point at the sender's site, which a
			// scanner would follow too but which is not ours to test.
			if strings.HasPrefix(h[1], w.baseURL()+"/") {
				links = append(links, strings.ReplaceAll(h[1], "&amp;", "&"))
			}
		}
	}
	before, beforeStatus := dump(t, r.Client, r.Prefix), w.status(id)

	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	statuses := map[int]int{}
	requests := 0
	for round := 0; round < 10; round++ {
		for _, link := range links {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				req, _ := http.NewRequest(method, link, nil)
				req.Header.Set("User-Agent", "Mozilla/5.0 (compatible; SafeLinks-Scanner/1.0)")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, link, err)
				}
				resp.Body.Close()
				statuses[resp.StatusCode]++
				requests++
			}
		}
	}
	after, afterStatus := dump(t, r.Client, r.Prefix), w.status(id)
	t.Logf("scanner: %d requests on %d links (GET and HEAD, ten rounds), statuses %v; %d bytes of keys compared",
		requests, len(links), statuses, len(before))
	if before != after {
		t.Errorf("the scanner changed Redis:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if beforeStatus.String() != afterStatus.String() {
		t.Errorf("the scanner changed the funnel: %s -> %s", beforeStatus, afterStatus)
	}
	if afterStatus.Counts[repermit.StateSent] != n {
		t.Errorf("after the scanner: %s, want all %d still sent", afterStatus, n)
	}
	for code, k := range statuses {
		if code != http.StatusOK && code != http.StatusMethodNotAllowed {
			t.Errorf("%d requests answered %d", k, code)
		}
	}
}
