package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
)

// TestAfterTheDeadlineConfirmedRecipientsWithdrawAndChangeTopics runs the
// worker and web commands on a campaign of four with a 12 s deadline.
// Three confirm two topics before it. After it (the expiry ran, the
// campaign is finished), p0 posts RFC 8058's one-click to the
// List-Unsubscribe URL of its mail, p1 declines on the landing page, p2
// narrows from two topics to one; p3, silent, gets 410. status --json,
// export --what confirmed, suppressed and ledger, and the page agree.
func TestAfterTheDeadlineConfirmedRecipientsWithdrawAndChangeTopics(t *testing.T) {
	r := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink, err := smtpsink.Start(ctx, smtpsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	c := newCLI(t, r)
	skey, _ := ledgerKeys(t, c)
	c.env["REPERMIT_LEDGER_KEY"] = skey
	c.env["REPERMIT_SMTP_URL"] = sink.URL()
	addr := freeTCPAddr(t)
	c.env["REPERMIT_HTTP_ADDR"] = addr
	base := "http://" + addr

	const n = 4
	var rows strings.Builder
	rows.WriteString("email\n")
	for i := range n {
		fmt.Fprintf(&rows, "p%d@example.com\n", i)
	}
	yaml := strings.Replace(fmt.Sprintf(campaignYAML, "late"), "deadline: 30d", "deadline: 12s", 1)
	dir := writeFiles(t, map[string]string{"campaign.yaml": yaml, "recipients.csv": rows.String()})
	if code, _, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 {
		t.Fatalf("launch: exit %d: %s", code, errOut)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if code, _, errOut := c.runContext(ctx, "worker"); code != 0 {
			t.Errorf("worker: exit %d: %s", code, errOut)
		}
	}()
	defer wg.Wait()
	defer cancel()
	startWeb(t, c, base, http.DefaultClient)
	waitUntil(t, 10*time.Second, "every initial mail", func() bool { return sink.Count() >= n })

	// Each one's RFC 8058 link as its mail carries it; the confirm links
	// signed as the worker signs them.
	st := redisstore.New(r.Client, r.Prefix)
	camp, err := st.Campaign(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	unsubURL := regexp.MustCompile(`<https://consent\.acme\.example(/u/[^>]+)>`)
	unsub := make(map[string]string)
	for _, m := range sink.Messages() {
		if sub := unsubURL.FindStringSubmatch(m.Header.Get("List-Unsubscribe")); len(sub) == 2 && len(m.To) == 1 {
			unsub[m.To[0]] = sub[1]
		}
	}
	if len(unsub) != n {
		t.Fatalf("List-Unsubscribe links of %d mails, want %d: %v", len(unsub), n, unsub)
	}
	dep, err := st.Deployment(ctx)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewBoundSigner([][]byte{[]byte(c.env["REPERMIT_SECRET"])}, token.Deployment(r.Prefix, dep))
	if err != nil {
		t.Fatal(err)
	}
	confirm := func(i int) string {
		return "/c/" + signer.Sign(token.Claims{Purpose: token.Confirm, Campaign: camp.ID, CampaignSeq: camp.Seq, Recipient: uint32(i), Deadline: camp.Deadline})
	}
	post := func(path string, form url.Values) (int, string) {
		t.Helper()
		resp, err := http.PostForm(base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	page := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		return string(body)
	}

	for i := range 3 {
		if code, _ := post(confirm(i), url.Values{"choice": {"confirm"}, "topic": {"yoga", "events"}}); code != http.StatusOK {
			t.Fatalf("confirm p%d before the deadline: %d", i, code)
		}
	}
	waitUntil(t, 20*time.Second, "the deadline's expiry to finish the campaign", func() bool {
		camp, err := st.Campaign(ctx, "late")
		return err == nil && camp.Status == repermit.StatusFinished
	})
	finished := time.Now()

	if code, body := post(unsub["p0@example.com"], url.Values{"List-Unsubscribe": {"One-Click"}}); code != http.StatusOK {
		t.Errorf("p0's RFC 8058 POST after the deadline: %d\n%s", code, body)
	}
	if code, body := post(confirm(1), url.Values{"choice": {"decline"}}); code != http.StatusOK {
		t.Errorf("p1's decline after the deadline: %d\n%s", code, body)
	}
	if p := page(confirm(2)); !strings.Contains(p, `value="yoga" checked`) || !strings.Contains(p, `value="events" checked`) {
		t.Errorf("p2's page after the deadline does not tick both topics:\n%s", p)
	}
	if code, body := post(confirm(2), url.Values{"choice": {"confirm"}, "topic": {"yoga"}, "change": {"topics"}}); code != http.StatusOK {
		t.Errorf("p2's narrowing after the deadline: %d\n%s", code, body)
	}
	if p := page(confirm(2)); !strings.Contains(p, `value="yoga" checked`) || strings.Contains(p, `value="events" checked`) {
		t.Errorf("p2's page after narrowing does not tick yoga alone:\n%s", p)
	}
	if code, body := post(unsub["p3@example.com"], url.Values{"List-Unsubscribe": {"One-Click"}}); code != http.StatusGone || !strings.Contains(body, "As you did not answer") {
		t.Errorf("p3 (silent, expired) after the deadline: %d, want 410 saying why\n%s", code, body)
	}

	// The commands' clock (frozen at newCLI) moves on: the ledger export
	// signs a checkpoint of every record now, later than the one the
	// worker signed at the deadline.
	c.now = time.Now()
	code, out, _ := c.run("status", "late", "--json")
	var status struct {
		Counts map[string]int64
		Topics map[string]int64
	}
	if code != 0 || json.Unmarshal([]byte(out), &status) != nil {
		t.Fatalf("status: exit %d, %q", code, out)
	}
	wantCounts := map[string]int64{"confirmed": 1, "unsubscribed": 1, "declined": 1, "expired": 1}
	for k, v := range status.Counts {
		if v != wantCounts[k] {
			t.Errorf("status counts %v, want %v", status.Counts, wantCounts)
			break
		}
	}
	if status.Topics["yoga"] != 1 || status.Topics["events"] != 0 {
		t.Errorf("status topics %v, want yoga 1, events 0", status.Topics)
	}

	code, out, errOut := c.run("export", "late", "--what", "confirmed")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 2 || recs[1][0] != "p2@example.com" || recs[1][4] != "yoga" {
		t.Errorf("confirmed export after the late answers: exit %d %v %s\n%s", code, err, errOut, out)
	}
	code, out, _ = c.run("export", "late", "--what", "suppressed")
	supp, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil {
		t.Fatalf("suppressed export: exit %d %v", code, err)
	}
	reasons := make(map[string]string)
	for _, rec := range supp[1:] {
		reasons[rec[0]] = rec[1]
	}
	for i, want := range []string{"unsubscribed", "declined", "", "expired"} {
		if got := reasons[repermit.AddressHash(fmt.Sprintf("p%d@example.com", i))]; got != want {
			t.Errorf("p%d suppressed as %q, want %q", i, got, want)
		}
	}

	code, out, errOut = c.run("export", "late", "--what", "ledger")
	if code != 0 {
		t.Fatalf("ledger export: exit %d %s", code, errOut)
	}
	var late []repermit.ConsentRecord
	answers := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec repermit.ConsentRecord
		if !strings.Contains(line, `"answer":`) || json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		answers++
		if rec.At.After(camp.Deadline) {
			late = append(late, rec)
		}
	}
	wantLate := []struct {
		recipient     int64
		answer        repermit.State
		before, after []string
	}{
		{0, repermit.StateUnsubscribed, []string{"yoga", "events"}, nil},
		{1, repermit.StateDeclined, []string{"yoga", "events"}, nil},
		{2, repermit.StateConfirmed, []string{"yoga", "events"}, []string{"yoga"}},
	}
	if answers != 6 || len(late) != len(wantLate) {
		t.Fatalf("ledger: %d records, %d after the deadline; want 6 and %d\n%s", answers, len(late), len(wantLate), out)
	}
	for i, w := range wantLate {
		if g := late[i]; g.Recipient != w.recipient || g.Answer != w.answer || !slices.Equal(g.TopicsBefore, w.before) || !slices.Equal(g.Topics, w.after) {
			t.Errorf("late record %d: %+v, want %+v", i, g, w)
		}
	}
	t.Logf("deadline %s, campaign finished %s; after it: status counts %v, topics %v; confirmed export %d row(s); %d ledger records, %d after the deadline",
		camp.Deadline.Format(time.RFC3339), finished.Format(time.RFC3339), status.Counts, status.Topics, len(recs)-1, answers, len(late))
}
