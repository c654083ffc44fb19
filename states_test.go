package repermit_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
)

// TestStateTableIsWellFormed: every row names a stage, gives a code of a
// stage, and is the only row of its (stage, event) pair; only answers stop
// at the deadline; every state has a stage and no two stages share a code.
func TestStateTableIsWellFormed(t *testing.T) {
	stages := repermit.Stages()
	names := map[string]bool{}
	codes := map[string]bool{}
	states := map[repermit.State]bool{}
	for _, st := range stages {
		if names[st.Name] {
			t.Errorf("stage %q listed twice", st.Name)
		}
		names[st.Name] = true
		code := fmt.Sprintf("%c%d", st.Code, st.Step)
		if codes[code] {
			t.Errorf("stage %q: another stage has code %c and step %d", st.Name, st.Code, st.Step)
		}
		codes[code] = true
		states[st.State] = true
	}
	for _, s := range repermit.States() {
		if !states[s] {
			t.Errorf("state %s has no stage", s)
		}
	}
	pairs := map[string]bool{}
	for _, tr := range repermit.Transitions() {
		if !names[tr.From] {
			t.Errorf("%s on %s: no stage %q", tr.From, tr.On, tr.From)
		}
		pair := tr.From + " " + string(tr.On)
		if pairs[pair] {
			t.Errorf("two rows for %s", pair)
		}
		pairs[pair] = true
		for _, step := range []string{"1", "2"} {
			code := tr.To
			for _, r := range [][2]string{{"{step}", step}, {"{lease}", "1764579600000"}} {
				code = strings.ReplaceAll(code, r[0], r[1])
			}
			if _, _, _, ok := repermit.ParseCode(code); !ok || strings.ContainsAny(code, "{}") {
				t.Errorf("%s on %s gives code %q of no stage", tr.From, tr.On, code)
			}
		}
		if tr.UntilDeadline && !tr.On.Answer() {
			t.Errorf("%s on %s stops at the deadline but is no answer", tr.From, tr.On)
		}
	}
}

var (
	now   = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	live  = fmt.Sprint(now.Add(time.Minute).UnixMilli())
	lapse = fmt.Sprint(now.Add(-time.Minute).UnixMilli())
	until = now.Add(2 * time.Minute)
	newQ  = fmt.Sprint(until.UnixMilli())
)

// TestApply states the state machine's rules as the issue and the README
// give them, independently of the table, so an edit of the table that
// changes behaviour fails here.
func TestApply(t *testing.T) {
	claim := func(step int) repermit.Change {
		return repermit.Change{Event: repermit.EventClaim, Step: step, Now: now, LeaseUntil: until}
	}
	ev := func(e repermit.Event, step int, late bool) repermit.Change {
		return repermit.Change{Event: e, Step: step, Now: now, Late: late}
	}
	for _, tc := range []struct {
		name string
		code string
		c    repermit.Change
		want string
		v    repermit.Verdict
	}{
		{"the initial mail is claimed from pending", "p", claim(1), "q1:" + newQ, repermit.Applied},
		{"a reminder is not claimed from pending", "p", claim(2), "p", repermit.Refused},
		{"a live claim makes a duplicate busy", "q1:" + live, claim(1), "q1:" + live, repermit.Busy},
		{"a lapsed claim is taken over", "q1:" + lapse, claim(1), "q1:" + newQ, repermit.Applied},
		{"a released claim is taken over", "q2:0", claim(2), "q2:" + newQ, repermit.Applied},
		{"a claim of another step is refused", "q1:" + lapse, claim(2), "q1:" + lapse, repermit.Refused},
		{"a reminder is claimed after the initial mail", "s1", claim(2), "q2:" + newQ, repermit.Applied},
		{"a step mailed is not claimed again", "s2", claim(2), "s2", repermit.Refused},
		{"sent ends the claim", "q2:" + live, ev(repermit.EventSent, 2, false), "s2", repermit.Applied},
		{"sent of another step is refused", "q2:" + live, ev(repermit.EventSent, 1, false), "q2:" + live, repermit.Refused},
		{"release ends the lease", "q1:" + live, ev(repermit.EventRelease, 1, false), "q1:0", repermit.Applied},
		{"renew moves the lease", "q1:" + lapse, repermit.Change{Event: repermit.EventRenew, Step: 1, Now: now, LeaseUntil: until}, "q1:" + newQ, repermit.Applied},
		{"renew does not revive a released claim", "q1:0", repermit.Change{Event: repermit.EventRenew, Step: 1, Now: now, LeaseUntil: until}, "q1:0", repermit.Refused},
		{"confirm from sent", "s1", ev(repermit.EventConfirm, 0, false), "c", repermit.Applied},
		{"confirm changes topics", "c", ev(repermit.EventConfirm, 0, true), "c", repermit.Applied},
		{"no confirm after the deadline", "s1", ev(repermit.EventConfirm, 0, true), "s1", repermit.Refused},
		{"the confirmed withdraw after the deadline", "c", ev(repermit.EventUnsubscribe, 0, true), "u", repermit.Applied},
		{"the confirmed decline after the deadline", "c", ev(repermit.EventDecline, 0, true), "d", repermit.Applied},
		{"no answer after expiry", "e", ev(repermit.EventConfirm, 0, false), "e", repermit.Refused},
		{"an unmailed recipient cannot bounce", "p", ev(repermit.EventBounce, 0, false), "p", repermit.Refused},
		{"a sent mail bounces", "s3", ev(repermit.EventBounce, 0, false), "b", repermit.Applied},
		{"the suppressed are found before mail", "q1:" + live, ev(repermit.EventSuppress, 0, false), "x", repermit.Applied},
		{"the confirmed are not suppressed", "c", ev(repermit.EventSuppress, 0, false), "c", repermit.Refused},
		{"the silent asked expire", "s1", ev(repermit.EventExpire, 0, false), "e", repermit.Applied},
		{"the never mailed are unreached", "p", ev(repermit.EventExpire, 0, false), "n", repermit.Applied},
		{"a lapsed initial claim is unreached", "q1:" + lapse, ev(repermit.EventExpire, 0, false), "n", repermit.Applied},
		{"an initial mail in flight waits", "q1:" + live, ev(repermit.EventExpire, 0, false), "q1:" + live, repermit.Busy},
		{"a reminder in flight expires: the recipient was asked", "q2:" + live, ev(repermit.EventExpire, 0, false), "e", repermit.Applied},
		{"the confirmed do not expire", "c", ev(repermit.EventExpire, 0, false), "c", repermit.Refused},
		{"an unknown code is refused", "z", ev(repermit.EventConfirm, 0, false), "z", repermit.Refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, v := repermit.Apply(tc.code, tc.c)
			if got != tc.want || v != tc.v {
				t.Errorf("Apply(%q, %s step %d late %t) = %q, %s; want %q, %s", tc.code, tc.c.Event, tc.c.Step, tc.c.Late, got, v, tc.want, tc.v)
			}
		})
	}
}

func TestStateOf(t *testing.T) {
	for _, tc := range []struct {
		code  string
		state repermit.State
		sent  int
	}{
		{"p", repermit.StatePending, 0},
		{"q1:" + live, repermit.StatePending, 0},
		{"q3:0", repermit.StateSent, 2},
		{"s2", repermit.StateSent, 2},
		{"c", repermit.StateConfirmed, 0},
		{"n", repermit.StateUnreached, 0},
		{"x", repermit.StateSuppressed, 0},
		{"", "", 0},
		{"z", "", 0},
	} {
		if st, n := repermit.StateOf(tc.code); st != tc.state || n != tc.sent {
			t.Errorf("StateOf(%q) = %s, %d; want %s, %d", tc.code, st, n, tc.state, tc.sent)
		}
	}
}

func TestFinal(t *testing.T) {
	var final []repermit.State
	for _, s := range repermit.States() {
		if s.Final() {
			final = append(final, s)
		}
	}
	want := []repermit.State{repermit.StateConfirmed, repermit.StateDeclined, repermit.StateBounced,
		repermit.StateUnsubscribed, repermit.StateExpired, repermit.StateUnreached, repermit.StateSuppressed}
	if !slices.Equal(final, want) {
		t.Errorf("final states = %v, want %v", final, want)
	}
}
