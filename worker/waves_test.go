package worker

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/webhook"
)

// relay plays the relay that accepted every mail and later reports some
// undeliverable: for each mail the sink received to a recipient index
// bounce(i) picks, it hands a Postfix DSN addressed to the mail's VERP
// envelope sender to the bounce mailbox's processor, as a poll would.
func (e *env) relay(ctx context.Context, bounce func(to string) bool) {
	e.t.Helper()
	tpl, err := os.ReadFile("../bounces/testdata/postfix-dsn.eml")
	if err != nil {
		e.t.Fatal(err)
	}
	p := &bounces.Processor{Store: e.store, Signer: e.signer}
	go func() {
		done := map[string]bool{}
		for ctx.Err() == nil {
			for _, m := range e.sink.Messages() {
				if done[m.From] || !bounce(m.To[0]) {
					continue
				}
				raw := strings.NewReplacer("{{VERP}}", m.From, "{{STATUS}}", "5.1.1").Replace(string(tpl))
				out, err := p.Process(ctx, []byte(raw))
				if err != nil || !out.Matched {
					e.t.Errorf("DSN for %s not applied: %+v, %v", m.To[0], out, err)
				}
				done[m.From] = true
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

// wavesReason is the pause reason status shows for the campaign's waves.
func (e *env) wavesReason(id string) string {
	c, err := e.store.Campaign(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := e.store.WavesReport(context.Background(), c)
	if err != nil {
		e.t.Fatal(err)
	}
	return r.StopText
}

func TestWavesStopWhenTheyHurt(t *testing.T) {
	waves := func(stop repermit.Stop) *repermit.Waves {
		// 400 recipients: waves of 100, 150, 150.
		return &repermit.Waves{Pilot: 100, GrowMilli: 1500, Observe: 2 * time.Second, Stop: stop}
	}
	stop := repermit.Stop{Bounces: repermit.Threshold{BasisPoints: 200}, Complaints: repermit.Threshold{Count: 1}, Deferrals: repermit.Threshold{BasisPoints: 2000}}
	tests := []struct {
		name string
		// bounce picks the addresses the relay reports undeliverable;
		// complain the recipient index that complains once wave 2 is out.
		bounce   func(to string) bool
		complain int64
		// stop5 stops at 5 % bounces instead of 2 %: the relay's reports
		// arrive one by one, and the feeder stops at the first figure
		// that crosses, so only a threshold at the wave's full 5 % names
		// the same figure on every run.
		stop5  bool
		mailed int
		reason string // "" runs to the end
	}{
		{"5% bounce after the relay accepted them: stops after the pilot",
			func(to string) bool { return idxOf(to)%20 == 0 },
			-1, true, 100,
			"waves stopped before wave 2: wave 1: 5 bounces of 100 recipients (5%) reached stop.bounces 5%; campaign (waves 1-1): 5 bounces of 100 recipients (5%) reached stop.bounces 5%"},
		{"nothing bounces: every wave goes", func(string) bool { return false }, -1, false, 400, ""},
		{"one complaint in wave 2 stops wave 3", func(string) bool { return false }, 180, false, 250,
			"waves stopped before wave 3: wave 2: 1 complaints of 150 recipients (0.67%) reached stop.complaints 1; campaign (waves 1-2): 1 complaints of 250 recipients (0.4%) reached stop.complaints 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, smtpsink.Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st := stop
			if tt.stop5 {
				st.Bounces.BasisPoints = 500
			}
			secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a CRM's secret of 32 bytes......"))
			hook := newCRM(t, secret, 0)
			c := e.launch(repermit.Campaign{Waves: waves(st),
				Webhooks: []repermit.Webhook{{URL: "http://" + hook.addr + "/events", Secret: secret}}}, 400, nil)
			cfg := e.config()
			cfg.SMTP.BounceDomain = "bounce.acme.example"
			cfg.WebhookInterval = 100 * time.Millisecond
			e.start(cfg)
			e.relay(ctx, tt.bounce)
			if tt.complain >= 0 {
				e.waitFor("wave 2 queued", 30*time.Second, func() bool { return e.sink.Count() >= 250 })
				p := &bounces.Processor{Store: e.store, Signer: e.signer}
				if _, err := p.Apply(ctx, bounces.Complaint, "webhook", c.ID, tt.complain, "complaint-1"); err != nil {
					t.Fatal(err)
				}
			}
			if tt.reason == "" {
				e.waitFor("every wave mailed", 60*time.Second, func() bool { return e.sink.Count() >= tt.mailed })
				// The feeder alone judges the waves; once its chain has
				// ended nothing can stop them any more.
				e.waitFor("the feeder's chain ended", 10*time.Second, func() bool {
					return e.tasks(TypeFeed, "active", "pending", "scheduled", "retry") == 0
				})
				e.waitSendsDone(10 * time.Second)
				if got := e.status(c.ID); got != repermit.StatusRunning {
					t.Errorf("status %s, want running", got)
				}
			} else {
				e.waitFor("paused by the waves", 60*time.Second, func() bool { return e.status(c.ID) == repermit.StatusPaused })
				if got := e.wavesReason(c.ID); got != tt.reason {
					t.Errorf("pause reason\n got %s\nwant %s", got, tt.reason)
				}
				// Had the stop not held, a feeder tick after the stopped
				// wave's observation time would have queued the next one.
				ws, err := e.store.Waves(ctx, c.ID)
				if err != nil || ws.Stop == nil {
					t.Fatalf("waves after the stop: %+v, %v", ws, err)
				}
				next := ws.Fed[ws.Stop.Wave].Add(c.Waves.Observe)
				e.waitFor("a feeder tick after the observation time", 10*time.Second, func() bool {
					beat, err := e.store.Beat(ctx, c.ID, cursorFeed)
					return err == nil && beat.After(next)
				})
				e.waitSendsDone(10 * time.Second)
			}
			if got := e.sink.Count(); got != tt.mailed {
				t.Errorf("%d mails sent, want %d", got, tt.mailed)
			}
			e.assertNoDuplicates()
			// The CRM hears of the pause once, with the figures status shows.
			var pauses []*webhook.Pause
			e.waitFor("the webhook backlog delivered", 10*time.Second, func() bool {
				return e.stats(c.ID).WebhookBacklog(0) == 0
			})
			acc, _, _, bad := hook.snapshot()
			for _, ev := range acc {
				if ev.Type == webhook.CampaignPaused {
					pauses = append(pauses, ev.Data.Pause)
				}
			}
			switch {
			case bad > 0:
				t.Errorf("%d webhook requests failed the reference library's signature check", bad)
			case tt.reason == "" && len(pauses) != 0:
				t.Errorf("campaign.paused events %+v, want none", pauses)
			case tt.reason != "" && (len(pauses) != 1 || pauses[0].Reason != tt.reason || len(pauses[0].Crossed) != 2 || pauses[0].NextWave != 2+boolInt(tt.complain >= 0)):
				t.Errorf("campaign.paused events %+v, want one with the reason %q and its 2 crossings", pauses, tt.reason)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func idxOf(to string) int64 {
	var n int64
	for _, r := range strings.TrimPrefix(to[:strings.IndexByte(to, '@')], "r") {
		n = n*10 + int64(r-'0')
	}
	return n
}

// TestRemindersFollowTheWaves sends 200 recipients in two waves of 100,
// observed 3 s, with a reminder 1.5 s after a wave: each wave's reminders
// go after its own initial mails and before the next wave, and the second
// wave is reminded too.
func TestRemindersFollowTheWaves(t *testing.T) {
	e := newEnv(t, smtpsink.Options{})
	e.launch(repermit.Campaign{
		Reminders: []time.Duration{1500 * time.Millisecond},
		Waves:     &repermit.Waves{Pilot: 100, GrowMilli: 2000, Observe: 3 * time.Second},
	}, 200, nil)
	e.start(e.config())
	e.waitFor("two waves mailed and reminded", 60*time.Second, func() bool { return e.sink.Count() >= 400 })
	var got []string
	for _, m := range e.sink.Messages() {
		wave := 1
		if idxOf(m.To[0]) >= 100 {
			wave = 2
		}
		s := fmt.Sprintf("%s %d", kindOf(m), wave)
		if len(got) == 0 || got[len(got)-1] != s {
			got = append(got, s)
		}
	}
	if want := []string{"initial 1", "reminder 1", "initial 2", "reminder 2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mails in the order %v, want %v", got, want)
	}
	e.assertNoDuplicates()
}
