package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// TestStatusShowsWavesAndResumeGoesOn launches a campaign in waves,
// records reports about recipients of the pilot and of wave 2 (as the
// worker, the bounce mailbox and the webhooks do; the one about the pilot
// arrives after wave 2 went out), stops the waves as the feeder does, and
// reads it all back through status, then resumes.
func TestStatusShowsWavesAndResumeGoesOn(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantBase int
	}{
		{"resume", nil, 1},
		{"resume --reset-thresholds", []string{"--reset-thresholds"}, 3},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := redistest.New(t)
			c := newCLI(t, r)
			id := fmt.Sprintf("waves-%d", i)
			var rows strings.Builder
			rows.WriteString("email\n")
			for i := range 400 {
				fmt.Fprintf(&rows, "p%d@example.com\n", i)
			}
			yaml := fmt.Sprintf(campaignYAML, id) + "waves:\n  pilot: 100\n  grow: 1.5\n  observe: 1h\n  stop: {bounces: 2%, complaints: 1, deferrals: 20%}\n"
			dir := writeFiles(t, map[string]string{"campaign.yaml": yaml, "recipients.csv": rows.String()})
			if code, _, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 {
				t.Fatalf("launch: %s", errOut)
			}
			st := redisstore.New(r.Client, r.Prefix)
			ctx := context.Background()
			record := func(i int64, kind, source string) {
				t.Helper()
				if _, _, err := st.RecordFeedback(ctx, redisstore.Feedback{Campaign: id, Index: i, Key: fmt.Sprintf("k%d", i), Kind: kind, Source: source, At: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			record(120, redisstore.FeedbackComplaint, "webhook")
			record(249, redisstore.FeedbackHard, "smtp")
			record(3, redisstore.FeedbackHard, "dsn") // late, still the pilot's
			record(7, redisstore.FeedbackSoft, "dsn")
			stop := redisstore.WaveStop{Wave: 2, NextWave: 3, Crossed: []repermit.Crossing{{Scope: "wave 2", Kind: "complaints", Count: 1, Recipients: 150, Threshold: repermit.Threshold{Count: 1}}}}
			if ok, err := st.StopWaves(ctx, id, stop); err != nil || !ok {
				t.Fatalf("StopWaves = %v, %v", ok, err)
			}
			code, out, _ := c.run("status", id)
			if code != 0 {
				t.Fatalf("status exit %d", code)
			}
			for _, want := range []string{
				"waves (observe 1h0m0s; stop at bounces 2%, complaints 1, deferrals 20%):",
				"wave 1   waiting      100 recipients  bounces 1, complaints 0, deferrals 1",
				"wave 2   waiting      150 recipients  bounces 1, complaints 1, deferrals 0",
				"wave 3   waiting      150 recipients  bounces 0, complaints 0, deferrals 0",
				"PAUSED: waves stopped before wave 3: wave 2: 1 complaints of 150 recipients (0.67%) reached stop.complaints 1",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("status lacks %q:\n%s", want, out)
				}
			}
			_, out, _ = c.run("status", id, "--json")
			var got statusJSON
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			if got.Waves == nil || len(got.Waves.Waves) != 3 || got.Waves.Stop == nil || got.Waves.Waves[1].Figures.Complaints != 1 {
				t.Fatalf("status --json waves = %+v", got.Waves)
			}
			if code, _, errOut := c.run(append([]string{"resume", id}, tt.args...)...); code != 0 {
				t.Fatalf("resume: %s", errOut)
			}
			ws, err := st.Waves(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ws.Stop != nil || ws.Ack != 2 || ws.Base != tt.wantBase {
				t.Errorf("after %s: stop %v, ack %d, base %d; want none, 2, %d", tt.name, ws.Stop, ws.Ack, ws.Base, tt.wantBase)
			}
			if code, out, _ := c.run("status", id); code != 0 || strings.Contains(out, "PAUSED") || !strings.Contains(out, "["+string(repermit.StatusRunning)+"]") {
				t.Errorf("status after resume:\n%s", out)
			}
		})
	}
}
