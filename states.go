package repermit

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// The recipient state machine, written once: the stages a recipient can be
// in, the code the store records for each, and the transitions between
// them, as data. The store generates its Lua checks from these tables (see
// redisstore/statetable.go) and Apply reads them in Go; a test in
// redisstore runs every (stage, event) pair through both and compares.

// Stage is a recipient's state as the store records it. It is finer than
// State: it keeps apart a mail that a worker has claimed (and may be
// sending) from one that went out, and knows which mail step.
//
// The store writes a stage as a code: the Code letter; for the mail stages
// the step k ("s2": initial mail and first reminder sent); for a claimed
// one also ":" and the end of the claim's lease in unix milliseconds
// ("q2:1764579600000"; ":0" once the claimer released it).
type Stage struct {
	// Name is what the transition table calls the stage.
	Name string
	// Code is the first byte of the stored code.
	Code byte
	// Step, when not 0, limits the stage to the codes of that mail step;
	// a code matches the stage of its letter and step before the stage of
	// its letter alone.
	Step int
	// Claimed stages carry a lease: mail step k is claimed and not yet
	// sent, so k-1 mails went out.
	Claimed bool
	// State is what users see.
	State State
	// Erases: entering the stage erases the recipient's personal data and
	// queues its suppression entry.
	Erases bool
}

var stages = []Stage{
	{Name: "pending", Code: 'p', State: StatePending},
	// A claimed initial mail may still fail: the recipient was not asked.
	{Name: "claimed-initial", Code: 'q', Step: 1, Claimed: true, State: StatePending},
	{Name: "claimed-reminder", Code: 'q', Claimed: true, State: StateSent},
	{Name: "sent", Code: 's', State: StateSent},
	{Name: "confirmed", Code: 'c', State: StateConfirmed},
	{Name: "declined", Code: 'd', State: StateDeclined, Erases: true},
	{Name: "bounced", Code: 'b', State: StateBounced, Erases: true},
	{Name: "unsubscribed", Code: 'u', State: StateUnsubscribed, Erases: true},
	{Name: "expired", Code: 'e', State: StateExpired, Erases: true},
	{Name: "suppressed", Code: 'x', State: StateSuppressed, Erases: true},
	// Never asked: kept, not suppressed, so a later campaign may ask.
	{Name: "unreached", Code: 'n', State: StateUnreached},
}

// Stages returns the stage table; each call a fresh copy.
func Stages() []Stage { return slices.Clone(stages) }

// Event is what may change a recipient's stage.
type Event string

const (
	EventClaim       Event = "claim"   // a worker takes mail step k, under a lease
	EventSent        Event = "sent"    // the SMTP server accepted mail step k
	EventRelease     Event = "release" // the claimer gives up after a temporary failure, so a retry may claim at once
	EventRenew       Event = "renew"   // the claimer is alive: its lease moves on
	EventConfirm     Event = "confirm" // an answer; confirmed -> confirmed changes topics
	EventDecline     Event = "decline" // an answer
	EventUnsubscribe Event = "unsub"   // an answer
	EventBounce      Event = "bounce"
	EventSuppress    Event = "suppress" // found on the suppression list at send time
	EventExpire      Event = "expire"   // the deadline passed without an answer
)

// answers are the events a recipient causes; the store chains each to the
// consent ledger.
var answers = []Event{EventConfirm, EventDecline, EventUnsubscribe}

// Events returns every event, in the order of the transition table.
func Events() []Event {
	var out []Event
	for _, t := range transitions {
		if !slices.Contains(out, t.On) {
			out = append(out, t.On)
		}
	}
	return out
}

// Answer reports whether the recipient causes e (and it goes to the
// consent ledger).
func (e Event) Answer() bool { return slices.Contains(answers, e) }

// StepRule is what a transition asks of the mail step of its event (k in
// a code, step in a Change).
type StepRule uint8

const (
	AnyStep   StepRule = iota
	FirstStep          // the event is about the initial mail: step = 1
	LaterStep          // a reminder after the stage's step: step > 1, k < step
	SameStep           // the stage's step: k = step
)

func (r StepRule) String() string { return [...]string{"any", "first", "later", "same"}[r] }

// LeaseRule is what a transition asks of the lease of a claimed stage.
type LeaseRule uint8

const (
	AnyLease LeaseRule = iota
	// LeaseLapsed: a lease that has not ended makes the recipient busy
	// (another worker may be mailing it); the transition waits for it.
	LeaseLapsed
	// LeaseHeld: the claim was not released (lease end not 0).
	LeaseHeld
)

func (r LeaseRule) String() string { return [...]string{"any", "lapsed", "held"}[r] }

// Transition is one allowed change: event On in stage From gives the code
// To, in which {step} stands for the event's mail step and {lease} for the
// new lease end in unix milliseconds.
type Transition struct {
	From  string // a Stage's Name
	On    Event
	To    string
	Step  StepRule
	Lease LeaseRule
	// UntilDeadline refuses the transition once the campaign's deadline
	// has passed. After it only the confirmed may still answer: change
	// topics, decline or unsubscribe, for as long as they exist.
	UntilDeadline bool
}

// transitions holds at most one row per (From, On); a pair without a row
// is refused.
var transitions = []Transition{
	{From: "pending", On: EventClaim, To: "q{step}:{lease}", Step: FirstStep},
	{From: "sent", On: EventClaim, To: "q{step}:{lease}", Step: LaterStep},
	// A retry after a crash takes an expired lease over; a duplicate task
	// sees a live one and backs off. This is what makes "one mail per
	// step" hold under at-least-once delivery.
	{From: "claimed-initial", On: EventClaim, To: "q{step}:{lease}", Step: SameStep, Lease: LeaseLapsed},
	{From: "claimed-reminder", On: EventClaim, To: "q{step}:{lease}", Step: SameStep, Lease: LeaseLapsed},

	{From: "claimed-initial", On: EventSent, To: "s{step}", Step: SameStep},
	{From: "claimed-reminder", On: EventSent, To: "s{step}", Step: SameStep},
	{From: "claimed-initial", On: EventRelease, To: "q{step}:0", Step: SameStep},
	{From: "claimed-reminder", On: EventRelease, To: "q{step}:0", Step: SameStep},
	{From: "claimed-initial", On: EventRenew, To: "q{step}:{lease}", Step: SameStep, Lease: LeaseHeld},
	{From: "claimed-reminder", On: EventRenew, To: "q{step}:{lease}", Step: SameStep, Lease: LeaseHeld},

	{From: "pending", On: EventConfirm, To: "c", UntilDeadline: true},
	{From: "claimed-initial", On: EventConfirm, To: "c", UntilDeadline: true},
	{From: "claimed-reminder", On: EventConfirm, To: "c", UntilDeadline: true},
	{From: "sent", On: EventConfirm, To: "c", UntilDeadline: true},
	{From: "confirmed", On: EventConfirm, To: "c"},

	{From: "pending", On: EventDecline, To: "d", UntilDeadline: true},
	{From: "claimed-initial", On: EventDecline, To: "d", UntilDeadline: true},
	{From: "claimed-reminder", On: EventDecline, To: "d", UntilDeadline: true},
	{From: "sent", On: EventDecline, To: "d", UntilDeadline: true},
	{From: "confirmed", On: EventDecline, To: "d"},

	{From: "pending", On: EventUnsubscribe, To: "u", UntilDeadline: true},
	{From: "claimed-initial", On: EventUnsubscribe, To: "u", UntilDeadline: true},
	{From: "claimed-reminder", On: EventUnsubscribe, To: "u", UntilDeadline: true},
	{From: "sent", On: EventUnsubscribe, To: "u", UntilDeadline: true},
	{From: "confirmed", On: EventUnsubscribe, To: "u"},

	{From: "claimed-initial", On: EventBounce, To: "b"},
	{From: "claimed-reminder", On: EventBounce, To: "b"},
	{From: "sent", On: EventBounce, To: "b"},

	{From: "pending", On: EventSuppress, To: "x"},
	{From: "claimed-initial", On: EventSuppress, To: "x"},
	{From: "claimed-reminder", On: EventSuppress, To: "x"},
	{From: "sent", On: EventSuppress, To: "x"},

	// Only the asked can be silent: whoever never got the initial mail
	// (claimed but unsent included) is unreached and keeps the address.
	// A live lease on the initial mail means the SMTP conversation may
	// still succeed: wait for its MarkSent (then it expires as asked) or
	// for the lease to run out (then it was not asked and is unreached).
	{From: "pending", On: EventExpire, To: "n"},
	{From: "claimed-initial", On: EventExpire, To: "n", Lease: LeaseLapsed},
	{From: "claimed-reminder", On: EventExpire, To: "e"},
	{From: "sent", On: EventExpire, To: "e"},
}

// Transitions returns the transition table; each call a fresh copy.
func Transitions() []Transition { return slices.Clone(transitions) }

// Final reports whether only the recipient's own answers may still change
// s: no mail, bounce or expiry will. (A confirmed recipient may still
// change topics, decline or unsubscribe.)
func (s State) Final() bool {
	for _, t := range transitions {
		if st, ok := StageNamed(t.From); ok && st.State == s && !t.On.Answer() {
			return false
		}
	}
	return true
}

// StageNamed returns the stage of the table called name.
func StageNamed(name string) (Stage, bool) {
	for _, st := range stages {
		if st.Name == name {
			return st, true
		}
	}
	return Stage{}, false
}

// ParseCode returns the stage of a stored code, its mail step k (0 for
// stages without one) and its lease end in unix milliseconds (0 for none
// or released). ok is false for a code of no stage.
func ParseCode(code string) (st Stage, k int, leaseMs int64, ok bool) {
	if code == "" {
		return Stage{}, 0, 0, false
	}
	rest, lease, _ := strings.Cut(code[1:], ":")
	// Most codes carry neither (pending, confirmed…): strconv's error
	// for "" is an allocation on every recipient read.
	if rest != "" {
		k, _ = strconv.Atoi(rest)
	}
	if lease != "" {
		leaseMs, _ = strconv.ParseInt(lease, 10, 64)
	}
	match := -1
	for i, s := range stages {
		if s.Code != code[0] || (s.Step != 0 && s.Step != k) {
			continue
		}
		if match < 0 || s.Step != 0 {
			match = i
		}
	}
	if match < 0 {
		return Stage{}, 0, 0, false
	}
	return stages[match], k, leaseMs, true
}

// StateOf returns the state users see for a stored code and the number of
// mails sent; "" for a code of no stage.
func StateOf(code string) (State, int) {
	st, k, _, ok := ParseCode(code)
	if !ok {
		return "", 0
	}
	if st.Claimed {
		k--
	}
	return st.State, k
}

// Verdict is the table's answer to an event.
type Verdict uint8

const (
	Refused Verdict = iota
	Applied
	// Busy: a live lease holds the recipient; the event may succeed once
	// the claimer is done or its lease ran out.
	Busy
)

func (v Verdict) String() string {
	return [...]string{"refused", "applied", "busy"}[v]
}

// Change is an event and what the table's rules read besides the stage.
type Change struct {
	Event Event
	// Step is the mail step the event is about (claim, sent, release,
	// renew); 0 for the others.
	Step int
	Now  time.Time
	// LeaseUntil is the new lease end (claim, renew).
	LeaseUntil time.Time
	// Late: the campaign's deadline has passed.
	Late bool
}

// Apply returns the code after c for a recipient stored as code, as the
// table says; the store's script does the same in Lua. For a refused or
// busy change it returns code unchanged.
func Apply(code string, c Change) (string, Verdict) {
	st, k, lease, ok := ParseCode(code)
	if !ok {
		return code, Refused
	}
	i := slices.IndexFunc(transitions, func(t Transition) bool { return t.From == st.Name && t.On == c.Event })
	if i < 0 {
		return code, Refused
	}
	t := transitions[i]
	if t.UntilDeadline && c.Late {
		return code, Refused
	}
	switch t.Step {
	case FirstStep:
		if c.Step != 1 {
			return code, Refused
		}
	case LaterStep:
		if c.Step <= 1 || k >= c.Step {
			return code, Refused
		}
	case SameStep:
		if k != c.Step {
			return code, Refused
		}
	}
	switch t.Lease {
	case LeaseLapsed:
		if lease > c.Now.UnixMilli() {
			return code, Busy
		}
	case LeaseHeld:
		if lease == 0 {
			return code, Refused
		}
	}
	newLease := "0"
	if !c.LeaseUntil.IsZero() {
		newLease = strconv.FormatInt(c.LeaseUntil.UnixMilli(), 10)
	}
	return strings.NewReplacer("{step}", strconv.Itoa(c.Step), "{lease}", newLease).Replace(t.To), Applied
}
