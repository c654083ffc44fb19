package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/smtpsink"
)

// TestDemoFunnelAddsUp runs the demo on a small list in compressed time:
// the funnel adds up to the number imported, every state the simulated
// recipients aim for is reached, and a reminder went out.
func TestDemoFunnelAddsUp(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs a whole campaign (about 15s)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	res, err := Run(ctx, Config{
		Recipients: 60,
		Deadline:   10 * time.Second,
		Reminder:   4 * time.Second,
		MaxPause:   time.Second,
		Out:        &out,
	})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Import.Imported != 60 {
		t.Errorf("imported %d, want 60", res.Import.Imported)
	}
	if res.Import.SkippedInvalid == 0 || res.Import.SkippedDuplicate == 0 || res.Import.SkippedSuppressed == 0 {
		t.Errorf("launch skipped %+v, want invalid, duplicate and suppressed rows", res.Import)
	}
	if got := res.Counts.Total(); got != res.Import.Imported {
		t.Errorf("funnel adds up to %d, imported %d: %v", got, res.Import.Imported, res.Counts)
	}
	for _, s := range repermit.States() {
		if res.Aimed[s] > 0 && res.Counts[s] == 0 {
			t.Errorf("the simulation aims for %d %s, the funnel has none: %v", res.Aimed[s], s, res.Counts)
		}
	}
	for _, s := range []repermit.State{repermit.StateConfirmed, repermit.StateDeclined, repermit.StateUnsubscribed, repermit.StateBounced, repermit.StateExpired, repermit.StateSuppressed} {
		if res.Aimed[s] == 0 {
			t.Errorf("the plan aims for no %s", s)
		}
	}
	if res.Counts[repermit.StatePending] != 0 || res.Counts[repermit.StateSent] != 0 {
		t.Errorf("after the deadline: %d pending, %d sent; want 0", res.Counts[repermit.StatePending], res.Counts[repermit.StateSent])
	}
	if res.Reminders == 0 {
		t.Error("no reminder was read")
	}
	if !strings.Contains(out.String(), "funnel of "+CampaignID) {
		t.Error("no funnel printed")
	}
	if lines := strings.Count(out.String(), "deadline "); lines < 5 {
		t.Errorf("%d progress lines, want about one a second", lines)
	}
}

func TestPlanCoversEveryBehaviour(t *testing.T) {
	tests := []struct {
		n           int
		sinkBounces bool
	}{{20, true}, {200, true}, {1000, false}}
	for _, tt := range tests {
		p := NewPlan(tt.n, 1, tt.sinkBounces)
		if len(p.Emails) != tt.n || len(p.Behaviour) != tt.n {
			t.Fatalf("NewPlan(%d): %d emails, %d behaviours", tt.n, len(p.Emails), len(p.Behaviour))
		}
		aimed := p.Aimed()
		if aimed.Total() != int64(tt.n) {
			t.Errorf("NewPlan(%d): aims add up to %d", tt.n, aimed.Total())
		}
		if got := aimed[repermit.StateBounced] > 0; got != tt.sinkBounces {
			t.Errorf("NewPlan(%d, sinkBounces %v): %d bounces aimed", tt.n, tt.sinkBounces, aimed[repermit.StateBounced])
		}
		for _, s := range []repermit.State{repermit.StateConfirmed, repermit.StateDeclined, repermit.StateUnsubscribed, repermit.StateExpired, repermit.StateSuppressed} {
			if aimed[s] == 0 {
				t.Errorf("NewPlan(%d): no %s aimed", tt.n, s)
			}
		}
	}
}

// TestDemoWithExternalSMTP points the demo at an SMTP server it cannot
// read: the recipients then take their links from the store, signed with
// the demo's key, and the funnel still adds up.
func TestDemoWithExternalSMTP(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs a whole campaign (about 15s)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	external, err := smtpsink.Start(ctx, smtpsink.Options{Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	defer external.Close()
	var out bytes.Buffer
	res, err := Run(ctx, Config{
		Recipients: 40,
		SMTPURL:    external.URL(),
		Deadline:   10 * time.Second,
		Reminder:   4 * time.Second,
		MaxPause:   time.Second,
		Out:        &out,
	})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := res.Counts.Total(); got != res.Import.Imported {
		t.Errorf("funnel adds up to %d, imported %d", got, res.Import.Imported)
	}
	// Every planned answer lands unless it came after the deadline, which
	// only a machine too loaded to keep the compressed time would cause.
	for _, s := range repermit.States() {
		if res.Aimed[s] != res.Counts[s] && res.Late == 0 {
			t.Errorf("%s: %d, aimed %d", s, res.Counts[s], res.Aimed[s])
		}
	}
	if want := int(res.Mails); external.Count() != want {
		t.Errorf("the external server accepted %d mails, the recipients read %d", external.Count(), want)
	}
}
