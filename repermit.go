// Package repermit holds the domain of a re-permission campaign: campaigns,
// recipients, their states and the application errors. It imports neither
// Redis nor HTTP nor SMTP; the packages below it implement the domain with
// those dependencies.
package repermit

import (
	"time"
)

// State is where a recipient stands in a campaign. Every imported recipient
// is in exactly one state at any time; the store's transition script is the
// only code that changes it.
type State string

const (
	StatePending      State = "pending"      // imported, not mailed yet
	StateSent         State = "sent"         // initial mail (and maybe reminders) sent, no answer
	StateConfirmed    State = "confirmed"    // pressed "yes": consent recorded
	StateDeclined     State = "declined"     // pressed "no, thanks"
	StateBounced      State = "bounced"      // permanent 5xx on the recipient
	StateUnsubscribed State = "unsubscribed" // List-Unsubscribe or the /u page
	StateExpired      State = "expired"      // mailed, then silent until the deadline
	StateUnreached    State = "unreached"    // never got the initial mail by the deadline; kept, not suppressed
	StateSuppressed   State = "suppressed"   // found on the suppression list at send time
)

// States lists every state in funnel order; reports iterate over it so that
// the counts they print always add up to the number imported.
var States = []State{
	StatePending, StateSent, StateConfirmed, StateDeclined,
	StateBounced, StateUnsubscribed, StateExpired, StateUnreached, StateSuppressed,
}

// Final reports whether no further transition may leave s, except that a
// confirmed recipient may still decline or unsubscribe.
func (s State) Final() bool {
	switch s {
	case StatePending, StateSent:
		return false
	}
	return true
}

// CampaignStatus is the lifecycle of a campaign as a whole.
type CampaignStatus string

const (
	// StatusImporting is held while launch writes recipients; workers and
	// readers treat such a campaign as absent, so a failed import leaves
	// nothing visible.
	StatusImporting CampaignStatus = "importing"
	StatusRunning   CampaignStatus = "running"
	StatusPaused    CampaignStatus = "paused"
	StatusCancelled CampaignStatus = "cancelled" // no more mail; the deadline still expires
	StatusFinished  CampaignStatus = "finished"  // deadline passed, silent recipients expired
)

// Rate limits sending. Zero values mean unlimited.
type Rate struct {
	PerSecond int `json:"per_second"`
	// PerDomainPerMinute maps a recipient domain to its limit; the key
	// "default" applies to every domain not listed.
	PerDomainPerMinute map[string]int `json:"per_domain_per_minute,omitempty"`
}

// DomainLimit returns the per-minute limit for a recipient domain, or 0 for
// none.
func (r Rate) DomainLimit(domain string) int {
	if n, ok := r.PerDomainPerMinute[domain]; ok {
		return n
	}
	return r.PerDomainPerMinute["default"]
}

// Campaign is what a campaign file describes, resolved to absolute times and
// paths, plus what launch assigns.
type Campaign struct {
	ID             string          `json:"id"`
	From           string          `json:"from"`
	Subject        string          `json:"subject"`
	ConfirmBaseURL string          `json:"confirm_base_url"`
	StartAt        time.Time       `json:"start_at"`
	Deadline       time.Time       `json:"deadline"`
	Reminders      []time.Duration `json:"reminders,omitempty"` // offsets after StartAt
	Rate           Rate            `json:"rate"`
	Topics         []string        `json:"topics,omitempty"`
	// TemplatesDir overrides the embedded templates; empty means defaults.
	TemplatesDir string `json:"templates,omitempty"`
	// Retention is how long after the deadline the campaign's remaining
	// per-recipient records are kept; zero keeps them until deleted.
	Retention time.Duration `json:"retention,omitempty"`
	// UnsubscribeMailto adds a mailto: List-Unsubscribe target when set.
	UnsubscribeMailto string `json:"unsubscribe_mailto,omitempty"`

	// Set by launch.
	Seq       uint32         `json:"seq,omitempty"` // short numeric id carried inside tokens
	Status    CampaignStatus `json:"status,omitempty"`
	CreatedAt time.Time      `json:"created_at,omitempty"`
}

// ReminderAt returns when reminder step k (1-based) is due.
func (c *Campaign) ReminderAt(k int) time.Time {
	return c.StartAt.Add(c.Reminders[k-1])
}

// Recipient is one imported address and what the campaign knows about it.
type Recipient struct {
	Campaign string
	Index    int64 // position in the import; never shown to recipients
	Email    string
	Name     string
	Locale   string
	Extra    map[string]string // extra CSV columns, available to templates
	State    State
	Step     int      // mails sent: 1 initial, 2 initial + first reminder, …
	Topics   []string // confirmed topics
	// AnsweredAt and LedgerID are set once the recipient answered.
	AnsweredAt time.Time
	LedgerID   string
}

// Counts holds the number of recipients per state.
type Counts map[State]int64

// Total is the number of recipients counted; it equals the number imported.
func (c Counts) Total() int64 {
	var n int64
	for _, s := range States {
		n += c[s]
	}
	return n
}

// ImportResult is what launch reports.
type ImportResult struct {
	Campaign          string `json:"campaign"`
	Imported          int64  `json:"imported"`
	SkippedInvalid    int64  `json:"skipped_invalid"`
	SkippedDuplicate  int64  `json:"skipped_duplicate"`
	SkippedSuppressed int64  `json:"skipped_suppressed"`
}
