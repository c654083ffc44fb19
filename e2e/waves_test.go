package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redistest"
)

// wavesStatus is the part of `status --json` about the waves.
type wavesStatus struct {
	State string `json:"state"`
	Waves *struct {
		Waves []struct {
			Wave  int    `json:"wave"`
			State string `json:"state"`
		} `json:"waves"`
		StopReason string `json:"stop_reason"`
	} `json:"waves"`
}

func (w *world) wavesStatus(id string) wavesStatus {
	w.t.Helper()
	var s wavesStatus
	if err := json.Unmarshal([]byte(w.run("status", id, "--json")), &s); err != nil || s.Waves == nil {
		w.t.Fatalf("status --json of %s: waves %+v, %v", id, s.Waves, err)
	}
	return s
}

// mailedBy returns the recipient indexes Mailpit holds a mail of campaign
// id for, in arrival order, read from the Message-IDs repermit wrote.
func mailedBy(mp *mailpit, id string) []int64 {
	msgs := mp.Messages()
	slices.Reverse(msgs) // Mailpit lists newest first
	var out []int64
	for _, m := range msgs {
		if c, idx, ok := mailer.ParseMessageID(m.MessageID); ok && c == id {
			out = append(out, idx)
		}
	}
	return out
}

// TestWavesStopOnLateBouncesAndComplaints sends three campaigns of 60
// recipients in waves of 20 (pilot 20, fixed size 20, observed 8 s, stop
// at 5 % bounces or one complaint) through separate worker and web
// processes into Mailpit, which accepts every mail, as a relay does. The
// bounces and complaints come afterwards, as Postmark reports them at
// /hooks/postmark:
//   - one hard bounce in the pilot (5 %): the campaign stops after it;
//   - nothing: every wave goes;
//   - one complaint in wave 2: wave 3 never goes.
//
// The pause reason `status --json` shows is compared figure for figure,
// and the complaint's campaign tells its webhook the same figures.
func TestWavesStopOnLateBouncesAndComplaints(t *testing.T) {
	needReal(t)
	t.Parallel()
	r := redistest.New(t)
	mp := startMailpit(t)
	w := newWorld(t, r.URL, r.Prefix, mp.SMTPURL())
	const pmUser, pmPass = "pm-user", "pm-password-0123456789"
	w.extraEnv = []string{"REPERMIT_HOOK_POSTMARK=" + pmUser + ":" + pmPass, "REPERMIT_WEBHOOK_INTERVAL=200ms"}
	secret := newWebhookSecret(t)
	crm := newCRMServer(t, secret, 0)
	w.startWeb()
	w.start("worker", "worker")

	const waves = "min_answer_window: 10s\nwaves:\n  pilot: 20\n  grow: 20\n  observe: 8s\n  stop: {bounces: 5%, complaints: 1}\n"
	hook := fmt.Sprintf("webhooks:\n  - url: %s\n    secret: %q\n", crm.url(), secret)
	for _, id := range []string{"w-bounce", "w-clean", "w-complaint"} {
		extra := waves
		if id == "w-complaint" {
			extra += hook
		}
		w.launch(w.writeCampaign(campaignSpec{ID: id, N: 60, Deadline: "120s", Extra: extra, Local: id + "-"}))
	}
	report := func(recordType, typ string, id string, idx int64, key int) {
		t.Helper()
		w.postmark(pmUser, pmPass, map[string]any{"RecordType": recordType, "ID": key, "Type": typ,
			"Metadata": map[string]string{"repermit-id": mailer.MessageID(id, idx, mailer.Initial, "E2E News <news@e2e.example>")}})
	}

	// first waits for a mail of campaign id to a recipient of index from
	// on, and returns that index. The reports below are sent as soon as
	// the mail they are about arrived, well within the wave's observation
	// time even on a loaded machine; one that comes while its wave is still
	// being sent counts all the same.
	first := func(id string, from int64) int64 {
		t.Helper()
		var got int64 = -1
		waitUntil(t, 60*time.Second, fmt.Sprintf("a mail of %s to recipient %d or later", id, from), func() bool {
			for _, idx := range mailedBy(mp, id) {
				if idx >= from {
					got = idx
					return true
				}
			}
			return false
		})
		return got
	}
	// The relay accepted a mail of the pilot, which bounces a moment later.
	report("Bounce", "HardBounce", "w-bounce", first("w-bounce", 0), 1)
	// A recipient of wave 2 complains.
	report("SpamComplaint", "SpamComplaint", "w-complaint", first("w-complaint", 20), 2)

	tests := []struct {
		id     string
		state  string
		mailed int
		reason string
	}{
		{"w-bounce", "paused", 20,
			"waves stopped before wave 2: wave 1: 1 bounces of 20 recipients (5%) reached stop.bounces 5%; campaign (waves 1-1): 1 bounces of 20 recipients (5%) reached stop.bounces 5%"},
		{"w-clean", "running", 60, ""},
		{"w-complaint", "paused", 40,
			"waves stopped before wave 3: wave 2: 1 complaints of 20 recipients (5%) reached stop.complaints 1; campaign (waves 1-2): 1 complaints of 40 recipients (2.5%) reached stop.complaints 1"},
	}
	waitUntil(t, 60*time.Second, "w-clean's three waves in Mailpit", func() bool { return len(mailedBy(mp, "w-clean")) >= 60 })
	for _, tt := range tests {
		if tt.state == "paused" {
			waitUntil(t, 30*time.Second, tt.id+" paused by its waves", func() bool { return w.wavesStatus(tt.id).State == "paused" })
		}
	}
	time.Sleep(10 * time.Second) // longer than an observation: a wave that should not go would go now
	for _, tt := range tests {
		st := w.wavesStatus(tt.id)
		if st.State != tt.state || st.Waves.StopReason != tt.reason {
			t.Errorf("%s: %s, pause reason\n got %q\nwant %q", tt.id, st.State, st.Waves.StopReason, tt.reason)
		}
		mailed := mailedBy(mp, tt.id)
		if len(mailed) != tt.mailed {
			t.Errorf("%s: %d mails, want %d", tt.id, len(mailed), tt.mailed)
		}
		for _, idx := range mailed {
			if idx >= int64(tt.mailed) {
				t.Errorf("%s: recipient %d of a wave that should not have gone was mailed", tt.id, idx)
			}
		}
	}
	waitUntil(t, 20*time.Second, "the CRM heard of w-complaint's pause", func() bool {
		evs, _, _, _ := crm.snapshot()
		return slices.ContainsFunc(evs, func(e crmEvent) bool { return e.Type == "campaign.paused" })
	})
	evs, _, _, bad := crm.snapshot()
	var pauses int
	for _, e := range evs {
		if e.Type != "campaign.paused" {
			continue
		}
		pauses++
		p := e.Data.Pause
		if p == nil || p.Reason != tests[2].reason || p.Wave != 2 || p.NextWave != 3 || len(p.Crossed) != 2 ||
			p.Crossed[0].Count != 1 || p.Crossed[0].Recipients != 20 || p.Crossed[1].Recipients != 40 {
			t.Errorf("campaign.paused %+v, want the figures of %q", p, tests[2].reason)
		}
	}
	if pauses != 1 || bad != 0 {
		t.Errorf("%d campaign.paused events, %d bad signatures; want 1 and 0", pauses, bad)
	}
}
