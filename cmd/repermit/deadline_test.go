package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/smtpsink"
)

// TestDeadlineErasesEveryExpiredAddressAndLaterCampaignsSkipThem runs the
// worker command on a campaign with a 3 s deadline and then reads every key
// the test's Redis prefix, asynq queue and rate limiter hold.
func TestDeadlineErasesEveryExpiredAddressAndLaterCampaignsSkipThem(t *testing.T) {
	r := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink, err := smtpsink.Start(ctx, smtpsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	c := newCLI(t, r)
	c.env["REPERMIT_SMTP_URL"] = sink.URL()

	const n = 60
	var rows strings.Builder
	rows.WriteString("email,name,locale,customer_no\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&rows, "silent%d@example.com,Silent Person %d,en,C-%d\n", i, i, 1000+i)
	}
	yaml := strings.Replace(fmt.Sprintf(campaignYAML, "first"), "deadline: 30d", "deadline: 3s", 1)
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

	st := redisstore.New(r.Client, r.Prefix)
	waitUntil(t, 5*time.Second, "the initial mails", func() bool { return sink.Count() >= n })
	for i, state := range []repermit.State{repermit.StateConfirmed, repermit.StateConfirmed, repermit.StateDeclined} {
		if _, err := st.Record(ctx, redisstore.Answer{Campaign: "first", Index: int64(i), State: state, Topics: []string{"yoga"}, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 15*time.Second, "the campaign to finish", func() bool {
		camp, err := st.Campaign(ctx, "first")
		return err == nil && camp.Status == repermit.StatusFinished
	})

	code, out, _ := c.run("status", "first", "--json")
	var status struct{ Counts map[string]int64 }
	if code != 0 || json.Unmarshal([]byte(out), &status) != nil {
		t.Fatalf("status: exit %d, %q", code, out)
	}
	if status.Counts["expired"] != n-3 || status.Counts["confirmed"] != 2 || status.Counts["declined"] != 1 {
		t.Errorf("final counts %v", status.Counts)
	}

	// Every value of every key of this test, whatever its type.
	expiredOrDeclined := func(v string) bool {
		for i := 2; i < n; i++ {
			if strings.Contains(v, fmt.Sprintf("silent%d@example.com", i)) || strings.Contains(v, fmt.Sprintf("Silent Person %d", i)) || strings.Contains(v, fmt.Sprintf("C-%d", 1000+i)) {
				return true
			}
		}
		return false
	}
	scanned := 0
	for _, pattern := range []string{r.Prefix + ":*", "asynq:{" + r.Prefix + "}*", "rate:" + r.Prefix + ":*"} {
		iter := r.Client.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			scanned++
			for _, v := range values(ctx, t, r.Client, key) {
				if expiredOrDeclined(key) || expiredOrDeclined(v) {
					t.Errorf("%s still holds an erased address or its data: %.120q", key, v)
				}
			}
		}
	}
	if scanned < 5 {
		t.Fatalf("scanned only %d keys; the scan cannot have seen the campaign", scanned)
	}

	code, out, errOut := c.run("export", "first", "--what", "confirmed")
	if code != 0 {
		t.Fatalf("export: %s", errOut)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) != 3 {
		t.Fatalf("confirmed export: %d rows, %v\n%s", len(recs), err, out)
	}
	for _, rec := range recs[1:] {
		if !strings.HasPrefix(rec[0], "silent") || !strings.Contains(rec[2], `"customer_no":"C-`) {
			t.Errorf("confirmed row %q lacks the address or the kept CSV data", rec)
		}
	}

	// A later campaign listing the same addresses skips the expired and the
	// declined ones as suppressed.
	yaml2 := strings.Replace(fmt.Sprintf(campaignYAML, "second"), "deadline: 30d", "deadline: 1h", 1)
	dir2 := writeFiles(t, map[string]string{"campaign.yaml": yaml2, "recipients.csv": rows.String()})
	code, out, errOut = c.run("launch", filepath.Join(dir2, "campaign.yaml"), "--json")
	var res repermit.ImportResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("second launch: exit %d %s %s", code, out, errOut)
	}
	if res.Imported != 2 || res.SkippedSuppressed != n-2 {
		t.Errorf("second launch = %+v, want the 2 confirmed imported and %d suppressed", res, n-2)
	}
}

func values(ctx context.Context, t *testing.T, rdb redis.UniversalClient, key string) []string {
	t.Helper()
	switch rdb.Type(ctx, key).Val() {
	case "string":
		return []string{rdb.Get(ctx, key).Val()}
	case "hash":
		var out []string
		for f, v := range rdb.HGetAll(ctx, key).Val() {
			out = append(out, f, v)
		}
		return out
	case "set":
		return rdb.SMembers(ctx, key).Val()
	case "zset":
		return rdb.ZRange(ctx, key, 0, -1).Val()
	case "list":
		return rdb.LRange(ctx, key, 0, -1).Val()
	case "stream":
		var out []string
		for _, m := range rdb.XRange(ctx, key, "-", "+").Val() {
			out = append(out, fmt.Sprint(m.Values))
		}
		return out
	}
	return nil
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestACampaignPausedUntilTheDeadlineKeepsTheUnmailedUnreached: a campaign
// forced to run short (paused after a few mails until its deadline) expires
// only whom it mailed; the rest end unreached, none suppressed, every one
// in export --what unreached, and the counts add up.
func TestACampaignPausedUntilTheDeadlineKeepsTheUnmailedUnreached(t *testing.T) {
	r := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink, err := smtpsink.Start(ctx, smtpsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	c := newCLI(t, r)
	c.env["REPERMIT_SMTP_URL"] = sink.URL()

	const n = 200
	var rows strings.Builder
	rows.WriteString("email,name,locale,customer_no\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&rows, "p%d@example.com,Person %d,de,C-%d\n", i, i, i)
	}
	yaml := strings.Replace(fmt.Sprintf(campaignYAML, "short"), "deadline: 30d", "deadline: 8s\nrate: {per_second: 60}", 1)
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

	waitUntil(t, 5*time.Second, "some mails", func() bool { return sink.Count() >= 10 })
	if code, _, errOut := c.run("pause", "short"); code != 0 {
		t.Fatalf("pause: exit %d: %s", code, errOut)
	}
	st := redisstore.New(r.Client, r.Prefix)
	waitUntil(t, 15*time.Second, "the campaign to finish", func() bool {
		camp, err := st.Campaign(ctx, "short")
		return err == nil && camp.Status == repermit.StatusFinished
	})
	mailed := make(map[string]bool)
	for _, m := range sink.Messages() {
		for _, to := range m.To {
			mailed[to] = true
		}
	}

	code, out, _ := c.run("status", "short", "--json")
	var status struct{ Counts map[string]int64 }
	if code != 0 || json.Unmarshal([]byte(out), &status) != nil {
		t.Fatalf("status: exit %d, %q", code, out)
	}
	var total int64
	for _, v := range status.Counts {
		total += v
	}
	if m := int64(len(mailed)); status.Counts["expired"] != m || status.Counts["unreached"] != n-m || total != n || m >= n {
		t.Errorf("counts %v after %d mailed, want %d expired and %d unreached, %d in all", status.Counts, m, m, n-m, n)
	}

	code, out, errOut := c.run("export", "short", "--what", "unreached")
	if code != 0 {
		t.Fatalf("export unreached: exit %d: %s", code, errOut)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) != n-len(mailed)+1 {
		t.Fatalf("unreached export: %d rows (want %d), %v\n%s", len(recs), n-len(mailed)+1, err, out)
	}
	if strings.Join(recs[0], ",") != "email,name,locale,attributes" {
		t.Errorf("unreached header %q", recs[0])
	}
	hashes := make(map[string]bool)
	for _, rec := range recs[1:] {
		if mailed[rec[0]] || !strings.HasPrefix(rec[1], "Person ") || rec[2] != "de" || !strings.Contains(rec[3], `"customer_no":"C-`) {
			t.Errorf("unreached row %q: mailed or lacking its data", rec)
		}
		hashes[repermit.AddressHash(rec[0])] = true
	}
	code, out, _ = c.run("export", "short", "--what", "suppressed")
	if code != 0 {
		t.Fatal("export suppressed failed")
	}
	supp, _ := csv.NewReader(strings.NewReader(out)).ReadAll()
	if len(supp) != len(mailed)+1 {
		t.Errorf("%d suppressed, want the %d mailed", len(supp)-1, len(mailed))
	}
	for _, rec := range supp[1:] {
		if hashes[rec[0]] {
			t.Errorf("unreached recipient %s suppressed", rec[0])
		}
	}
	t.Logf("paused after %d of %d mails until the deadline: counts %v; export --what unreached: %d rows; export --what suppressed: %d rows, none of them unreached",
		len(mailed), n, status.Counts, len(recs)-1, len(supp)-1)

	// The export is a recipients file: a later campaign asks them all.
	_, unreached, _ := c.run("export", "short", "--what", "unreached")
	dir2 := writeFiles(t, map[string]string{"campaign.yaml": fmt.Sprintf(campaignYAML, "second-try"), "recipients.csv": unreached})
	code, out, errOut = c.run("launch", filepath.Join(dir2, "campaign.yaml"), "--json")
	var res repermit.ImportResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("launch of the unreached: exit %d %s %s", code, out, errOut)
	}
	if res.Imported != int64(n-len(mailed)) || res.SkippedSuppressed != 0 || res.SkippedInvalid != 0 {
		t.Errorf("launch of the unreached = %+v, want all %d imported", res, n-len(mailed))
	}
}

// TestValidateAndLaunchRefuseACampaignThatCannotAskEveryone: 10,000
// recipients at 20 a second cannot all be asked within a 1m deadline;
// validate and launch refuse it with exit 2, the line of the rate, the
// projected finish and a rate that fits, and launch writes nothing.
func TestValidateAndLaunchRefuseACampaignThatCannotAskEveryone(t *testing.T) {
	r := redistest.New(t)
	c := newCLI(t, r)
	var rows strings.Builder
	rows.WriteString("email\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&rows, "p%d@d%d.example\n", i, i%20)
	}
	yaml := strings.Replace(fmt.Sprintf(campaignYAML, "too-fast"), "deadline: 30d", "deadline: 1m\nrate:\n  per_second: 20", 1)
	dir := writeFiles(t, map[string]string{"campaign.yaml": yaml, "recipients.csv": rows.String()})
	path := filepath.Join(dir, "campaign.yaml")
	line := strings.Count(yaml[:strings.Index(yaml, "per_second")], "\n") + 1
	for _, cmd := range []string{"validate", "launch"} {
		code, _, errOut := c.run(cmd, path)
		if code != 2 {
			t.Fatalf("%s: exit %d, want 2\n%s", cmd, code, errOut)
		}
		for _, want := range []string{fmt.Sprintf("campaign.yaml:%d: rate:", line), "10000 initial mails", "8m20s after the start", "rate.per_second: 334"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", cmd, want, errOut)
			}
		}
	}
	if keys := r.Keys(t); len(keys) != 0 {
		t.Errorf("a refused launch wrote %v", keys)
	}
	// At a rate that fits, the same list launches.
	ok := strings.Replace(yaml, "per_second: 20", "per_second: 334", 1)
	dir = writeFiles(t, map[string]string{"campaign.yaml": ok, "recipients.csv": rows.String()})
	if code, _, errOut := c.run("validate", filepath.Join(dir, "campaign.yaml")); code != 0 {
		t.Errorf("validate at 334/s: exit %d\n%s", code, errOut)
	}
}

// TestStatusProjectsTheFinishAndWarnsWhenBehind: status shows when the
// pending initial mails will be out beside the deadline, and warns once
// that leaves less than the answer window.
func TestStatusProjectsTheFinishAndWarnsWhenBehind(t *testing.T) {
	r := redistest.New(t)
	c := newCLI(t, r)
	var rows strings.Builder
	rows.WriteString("email\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&rows, "p%d@example.com\n", i)
	}
	yaml := strings.Replace(fmt.Sprintf(campaignYAML, "projected"), "deadline: 30d", "deadline: 1h\nrate: {per_second: 10}", 1)
	dir := writeFiles(t, map[string]string{"campaign.yaml": yaml, "recipients.csv": rows.String()})
	if code, _, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 {
		t.Fatalf("launch: exit %d: %s", code, errOut)
	}
	launched := c.now
	tests := []struct {
		after  time.Duration // since the launch; nobody was mailed
		finish time.Duration
		behind bool
	}{
		{time.Minute, time.Minute + 100*time.Second, false},
		{55 * time.Minute, 55*time.Minute + 100*time.Second, true},
	}
	for _, tt := range tests {
		c.now = launched.Add(tt.after)
		code, out, _ := c.run("status", "projected")
		want := "projected finish " + launched.Add(tt.finish).Format(time.RFC3339)
		if code != 0 || !strings.Contains(out, want) || strings.Contains(out, "WARNING: behind") != tt.behind {
			t.Errorf("after %s: exit %d, want %q and a warning %v:\n%s", tt.after, code, want, tt.behind, out)
		}
		code, out, _ = c.run("status", "projected", "--json")
		var st struct {
			ProjectedFinish time.Time `json:"projected_finish"`
			Behind          bool
		}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || !st.ProjectedFinish.Equal(launched.Add(tt.finish).Truncate(time.Second)) && !st.ProjectedFinish.Equal(launched.Add(tt.finish)) || st.Behind != tt.behind {
			t.Errorf("after %s: --json %s", tt.after, out)
		}
	}
}
