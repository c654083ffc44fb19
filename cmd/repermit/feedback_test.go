package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// TestStatusShowsFeedbackBySourceAndComplaintRate records bounce and
// complaint reports as the worker, the bounce mailbox and the webhooks do,
// and reads them back through `status`.
func TestStatusShowsFeedbackBySourceAndComplaintRate(t *testing.T) {
	tests := []struct {
		id         string
		complaints int
		wantRate   float64
		verdict    string
	}{
		{"few-complaints", 2, 0.002, "within the 0.3%"},
		{"many-complaints", 4, 0.004, "ABOVE the 0.3%"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			r := redistest.New(t)
			c := newCLI(t, r)
			const n = 1000
			var rows strings.Builder
			rows.WriteString("email\n")
			for i := range n {
				fmt.Fprintf(&rows, "p%d@example.com\n", i)
			}
			dir := writeFiles(t, map[string]string{"campaign.yaml": fmt.Sprintf(campaignYAML, tt.id), "recipients.csv": rows.String()})
			if code, _, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 {
				t.Fatalf("launch: %s", errOut)
			}
			st := redisstore.New(r.Client, r.Prefix)
			ctx := context.Background()
			idxs := make([]int64, n)
			for i := range idxs {
				idxs[i] = int64(i)
			}
			now := time.Now()
			for _, step := range []func() ([]error, error){
				func() ([]error, error) { return st.ClaimBatch(ctx, tt.id, idxs, 1, now, time.Minute) },
				func() ([]error, error) { return st.MarkSentBatch(ctx, tt.id, idxs, 1, now) },
			} {
				if errs, err := step(); err != nil || errors.Join(errs...) != nil {
					t.Fatal(err, errs)
				}
			}
			record := func(i int, kind, source string) {
				t.Helper()
				if _, _, err := st.RecordFeedback(ctx, redisstore.Feedback{Campaign: tt.id, Index: int64(i), Key: fmt.Sprintf("k%d", i), Kind: kind, Source: source, At: now}); err != nil {
					t.Fatal(err)
				}
			}
			record(0, redisstore.FeedbackHard, "smtp")
			record(1, redisstore.FeedbackHard, "smtp")
			record(2, redisstore.FeedbackHard, "dsn")
			record(3, redisstore.FeedbackSoft, "webhook")
			for i := range tt.complaints {
				record(10+i, redisstore.FeedbackComplaint, []string{"arf", "webhook"}[i%2])
			}

			code, out, _ := c.run("status", tt.id, "--json")
			if code != 0 {
				t.Fatalf("status exit %d", code)
			}
			var got statusJSON
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("status --json printed %q: %v", out, err)
			}
			want := map[string]map[string]int64{
				"bounced":   {"smtp": 2, "dsn": 1, "arf": 0, "webhook": 0},
				"soft":      {"smtp": 0, "dsn": 0, "arf": 0, "webhook": 1},
				"complaint": {"smtp": 0, "dsn": 0, "arf": int64((tt.complaints + 1) / 2), "webhook": int64(tt.complaints / 2)},
			}
			if fmt.Sprint(got.Feedback) != fmt.Sprint(want) {
				t.Errorf("feedback %v, want %v", got.Feedback, want)
			}
			if got.ComplaintRate != tt.wantRate || got.ComplaintRateLimit != 0.003 {
				t.Errorf("complaint rate %v (limit %v), want %v (0.003)", got.ComplaintRate, got.ComplaintRateLimit, tt.wantRate)
			}
			code, out, _ = c.run("status", tt.id)
			if code != 0 || !strings.Contains(out, "hard bounces:  smtp 2, dsn 1, webhook 0") ||
				!strings.Contains(out, fmt.Sprintf("complaint rate %.2f%% of mailed, %s", tt.wantRate*100, tt.verdict)) {
				t.Errorf("status view lacks the feedback lines:\n%s", out)
			}
		})
	}
}
