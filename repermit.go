// Package repermit holds the domain of a re-permission campaign: campaigns,
// recipients, their states and the application errors. It imports neither
// Redis nor HTTP nor SMTP; the packages below it implement the domain with
// those dependencies.
package repermit

import (
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	// Campaign time zones must load on machines without tzdata.
	_ "time/tzdata"
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
// the counts they print always add up to the number imported. Each call
// returns a fresh slice, so no caller can reorder another's.
func States() []State { return slices.Clone(states) }

var states = []State{
	StatePending, StateSent, StateConfirmed, StateDeclined,
	StateBounced, StateUnsubscribed, StateExpired, StateUnreached, StateSuppressed,
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
	// MinAnswerWindow is the least time the last initial mail must leave
	// before the deadline; zero means AnswerWindow's default.
	MinAnswerWindow time.Duration `json:"min_answer_window,omitempty"`
	// UnsubscribeMailto adds a mailto: List-Unsubscribe target when set.
	UnsubscribeMailto string `json:"unsubscribe_mailto,omitempty"`
	// Waves, when set, sends the list in waves (see Waves).
	Waves *Waves `json:"waves,omitempty"`

	// ListName is what the recipients would keep getting ("ACME News"),
	// per locale; empty means the display name of From.
	ListName Text `json:"list_name,omitempty"`
	// Subjects is the initial mail's subject per locale; Subject holds the
	// default locale's, for operators' views.
	Subjects Text `json:"subjects,omitempty"`
	// ReminderSubjects is the reminders' subject per locale; empty means
	// "Reminder: " and the subject, in the recipient's language.
	ReminderSubjects Text `json:"reminder_subjects,omitempty"`
	// DefaultLocale is the language of recipients without a known locale;
	// empty means "en".
	DefaultLocale string `json:"default_locale,omitempty"`
	// TimeZone is the IANA zone in which mails and pages write dates;
	// empty means the deadline's own offset.
	TimeZone string `json:"timezone,omitempty"`
	// TopicText holds each topic's label and description by topic id.
	TopicText map[string]TopicText `json:"topic_text,omitempty"`
	// Controller is who is responsible for the data (GDPR Art. 13), shown
	// in every mail and page.
	Controller Controller `json:"controller"`
	// Webhooks receive the campaign's consent events (Standard Webhooks).
	Webhooks []Webhook `json:"webhooks,omitempty"`
	// Shards is how many Redis hash-slot shards the recipients are spread
	// over, so that one campaign can span the nodes of a Redis Cluster;
	// 0 (and 1) is one shard. Set in the file or by launch from the
	// list's size.
	Shards int `json:"shards,omitempty"`

	// Set by launch.
	Seq       uint32         `json:"seq,omitempty"` // short numeric id carried inside tokens
	Status    CampaignStatus `json:"status,omitempty"`
	CreatedAt time.Time      `json:"created_at,omitempty"`
	// BoundTokens is set by every launch since links were bound to their
	// deployment and campaign. A campaign launched before has unbound
	// (version 1) links in its recipients' mailboxes, which keep working
	// for that campaign alone, so its confirmed recipients can withdraw.
	BoundTokens bool `json:"bound_tokens,omitempty"`
}

// Webhook is a CRM endpoint that receives consent events, signed per the
// Standard Webhooks spec with Secret ("whsec_" + base64 key).
type Webhook struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// Text is a wording of a campaign file per locale (lower-case BCP 47, as
// the locale package writes them). The key "" holds a wording given as one
// string, which serves every locale.
type Text map[string]string

// In returns the wording for the first of locales that has one, else the
// one for every locale, else "".
func (t Text) In(locales ...string) string {
	for _, l := range locales {
		if v, ok := t[l]; ok {
			return v
		}
	}
	return t[""]
}

// Covers reports whether In finds a wording for one of locales.
func (t Text) Covers(locales ...string) bool {
	if len(t) == 0 {
		return true
	}
	if _, ok := t[""]; ok {
		return true
	}
	for _, l := range locales {
		if _, ok := t[l]; ok {
			return true
		}
	}
	return false
}

// TopicText is what a topic is called and brings, per locale.
type TopicText struct {
	Label       Text `json:"label,omitempty"`
	Description Text `json:"description,omitempty"`
}

// Controller is the controller of the recipients' data in the sense of
// GDPR Art. 4(7): who asks for consent and answers for it.
type Controller struct {
	Name       string `json:"name"`
	Address    string `json:"address"`       // postal address
	Contact    string `json:"contact"`       // e-mail address or https URL
	PrivacyURL string `json:"privacy_url"`   // the privacy policy
	DPO        string `json:"dpo,omitempty"` // data-protection officer, optional
}

// ContactURL returns Contact as a link: mailto: for an address.
func (c Controller) ContactURL() string { return link(c.Contact) }

// Probe returns a controller like c whose every particular is one word
// that wrapping, HTML escaping and URL normalizing leave as it is:
// validate renders a campaign's mails and pages with it and asks Missing
// whether each shows who is asking, without being fooled by a real name
// broken over two lines or an address written as &amp;.
func (c Controller) Probe() Controller {
	p := Controller{
		Name: "controller-name.probe.invalid", Address: "controller-address.probe.invalid",
		Contact: "contact@probe.invalid", PrivacyURL: "https://privacy.probe.invalid/policy",
	}
	if c.DPO != "" {
		p.DPO = "dpo@probe.invalid"
	}
	return p
}

// Missing returns the key of the first of c's particulars (name, address,
// contact, privacy_url, dpo when c has one) that rendered does not
// contain, or "" when it has them all. GDPR Art. 13 wants every request
// for consent to say who asks, how to reach them and where their privacy
// policy is.
func (c Controller) Missing(rendered string) string {
	for _, f := range []struct{ key, v string }{
		{"name", c.Name}, {"address", c.Address}, {"contact", c.Contact}, {"privacy_url", c.PrivacyURL}, {"dpo", c.DPO},
	} {
		if f.v != "" && !strings.Contains(rendered, f.v) {
			return f.key
		}
	}
	return ""
}

// DPOURL returns DPO as a link, or "" if it is neither an address nor a URL.
func (c Controller) DPOURL() string { return link(c.DPO) }

func link(v string) string {
	switch {
	case v == "":
		return ""
	case strings.HasPrefix(v, "https://"), strings.HasPrefix(v, "http://"):
		return v
	}
	if a, err := mail.ParseAddress(v); err == nil {
		return "mailto:" + a.Address
	}
	return ""
}

var zones sync.Map // name -> *time.Location

// Location returns the campaign's time zone: TimeZone, or the deadline's
// own location when TimeZone is empty or unknown here.
func (c *Campaign) Location() *time.Location {
	if c.TimeZone != "" {
		if l, ok := zones.Load(c.TimeZone); ok {
			return l.(*time.Location)
		}
		if l, err := time.LoadLocation(c.TimeZone); err == nil {
			zones.Store(c.TimeZone, l)
			return l
		}
	}
	return c.Deadline.Location()
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
	// AddressHash is the SHA-256 of the address where only that is kept:
	// a confirmed recipient after the retention ended, so that withdrawing
	// still suppresses the address.
	AddressHash string
	Name        string
	Locale      string
	Extra       map[string]string // extra CSV columns, available to templates
	State       State
	Step        int      // mails sent: 1 initial, 2 initial + first reminder, …
	Topics      []string // confirmed topics
	// AnsweredAt and LedgerID are set once the recipient answered.
	AnsweredAt time.Time
	LedgerID   string
	// Revision names the stored state the recipient was read in, for the
	// store alone: an answer made from this read is written only if the
	// recipient has not changed since. "" when unknown.
	Revision string
}

// Counts holds the number of recipients per state.
type Counts map[State]int64

// Total is the number of recipients counted; it equals the number imported.
func (c Counts) Total() int64 {
	var n int64
	for _, s := range states {
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
