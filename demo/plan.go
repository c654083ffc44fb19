package demo

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/repermit/repermit"
)

// Behaviour is what one simulated recipient does with the campaign mail.
type Behaviour int

const (
	Silent           Behaviour = iota // never reacts; expires at the deadline
	Scanned                           // a mail scanner GETs every link; still expires
	ConfirmAll                        // "yes", every topic
	ConfirmSome                       // "yes", one topic
	Decline                           // "no, thanks"
	OneClick                          // List-Unsubscribe, RFC 8058 POST from the mail client
	ConfirmThenLeave                  // "yes", later List-Unsubscribe
	AfterReminder                     // ignores the first mail, confirms from the reminder
	Bounce                            // the address does not exist (550 5.1.1)
	SuppressedLater                   // lands on the suppression list before its mail goes out
)

var behaviourNames = [...]string{"silent", "scanned", "confirm all", "confirm some", "decline", "one-click unsubscribe", "confirm then unsubscribe", "answer the reminder", "bounce", "suppressed before sending"}

func (b Behaviour) String() string { return behaviourNames[b] }

// Outcome is the state a behaviour leads to.
func (b Behaviour) Outcome() repermit.State {
	switch b {
	case ConfirmAll, ConfirmSome, AfterReminder:
		return repermit.StateConfirmed
	case Decline:
		return repermit.StateDeclined
	case OneClick, ConfirmThenLeave:
		return repermit.StateUnsubscribed
	case Bounce:
		return repermit.StateBounced
	case SuppressedLater:
		return repermit.StateSuppressed
	}
	return repermit.StateExpired
}

// shares of the list, in per mille; the rest is Silent: about half
// confirms, a quarter never answers.
var shares = []struct {
	b        Behaviour
	perMille int
}{
	{ConfirmAll, 280}, {ConfirmSome, 120}, {Decline, 100}, {OneClick, 70},
	{ConfirmThenLeave, 40}, {AfterReminder, 110}, {Bounce, 20}, {SuppressedLater, 10},
	{Scanned, 50},
}

// Plan is who does what in a demo campaign.
type Plan struct {
	Emails     []string             // imported addresses, in CSV order
	Behaviour  map[string]Behaviour // by address
	Topics     []string
	Invalid    []string // rows launch skips as invalid
	Duplicates []string // rows launch skips as duplicates
	OnFile     []string // rows on the campaign's suppression file
}

// NewPlan assigns behaviours to n addresses. With sinkBounces false (an
// external SMTP server that accepts everything) nobody is planned to bounce.
func NewPlan(n int, seed uint64, sinkBounces bool) *Plan {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	p := &Plan{Behaviour: make(map[string]Behaviour, n), Topics: []string{"newsletter", "events"}}
	domains := []string{"example.com", "example.org", "example.net", "mail.example", "web.example"}
	var order []Behaviour
	for _, s := range shares {
		k := n * s.perMille / 1000
		if k == 0 && n >= 20 {
			k = 1 // every aimed state shows up even on a small list
		}
		for i := 0; i < k; i++ {
			order = append(order, s.b)
		}
	}
	for len(order) < n {
		order = append(order, Silent)
	}
	order = order[:n]
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i, b := range order {
		if b == Bounce && !sinkBounces {
			b = Silent
		}
		email := fmt.Sprintf("reader%05d@%s", i, domains[i%len(domains)])
		p.Emails = append(p.Emails, email)
		p.Behaviour[email] = b
	}
	p.Invalid = []string{"not-an-address", "someone@", "two@@example.com"}
	if n > 0 {
		p.Duplicates = []string{strings.ToUpper(p.Emails[0])}
	}
	p.OnFile = []string{"opted-out@example.com", "complained@example.org"}
	return p
}

// Aimed returns how many recipients the plan leads to each state.
func (p *Plan) Aimed() repermit.Counts {
	c := make(repermit.Counts)
	for _, b := range p.Behaviour {
		c[b.Outcome()]++
	}
	return c
}

// With returns the addresses planned to behave as b.
func (p *Plan) With(b Behaviour) []string {
	var out []string
	for _, e := range p.Emails {
		if p.Behaviour[e] == b {
			out = append(out, e)
		}
	}
	return out
}

// campaignTimes are the compressed times of the demo campaign.
type campaignTimes struct {
	StartAt  time.Time
	Deadline time.Duration
	Reminder time.Duration
}

// writeFiles writes the campaign file, its recipients CSV and suppression
// file into dir, modelled on config/examples/newsletter.yaml, and returns the
// campaign file's path.
func (p *Plan) writeFiles(dir, id, baseURL string, tm campaignTimes, perSecond int) (string, error) {
	var csv strings.Builder
	csv.WriteString("email,name,locale,customer_since\n")
	names := []string{"Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo"}
	for i, e := range p.Emails {
		locale := "en"
		if i%3 == 2 { // a third in German; the first (--keep's) in English
			locale = "de"
		}
		fmt.Fprintf(&csv, "%s,%s Reader%d,%s,%d\n", e, names[i%len(names)], i, locale, 2010+i%15)
	}
	for _, e := range p.Invalid {
		fmt.Fprintf(&csv, "%s,Broken Row,en,2015\n", e)
	}
	for _, e := range p.Duplicates {
		fmt.Fprintf(&csv, "%s,Same Person Again,en,2015\n", e)
	}
	for _, e := range p.OnFile {
		fmt.Fprintf(&csv, "%s,Opted Out,en,2015\n", e)
	}
	files := map[string]string{
		"recipients.csv":  csv.String(),
		"suppression.csv": "email\n" + strings.Join(p.OnFile, "\n") + "\n",
		"newsletter.yaml": fmt.Sprintf(`# Generated by repermit demo: config/examples/newsletter.yaml in compressed time.
id: %s
from: "ACME News <news@acme.example>"
subject: "Do you still want ACME News?"
recipients: recipients.csv
suppression: suppression.csv
confirm_base_url: %s
start_at: %s
deadline: %s
reminders: [%s]
rate:
  per_second: %d
  per_domain_per_minute: {default: %d}
topics: [%s]
list_unsubscribe_mailto: unsubscribe@acme.example
controller:
  name: ACME Handels GmbH
  address: "Hauptstraße 1, 10115 Berlin, Germany"
  contact: privacy@acme.example
  privacy_url: https://acme.example/privacy
`, id, baseURL, tm.StartAt.Format(time.RFC3339Nano), seconds(tm.Deadline), seconds(tm.Reminder),
			perSecond, perSecond*60, strings.Join(p.Topics, ", ")),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("write demo campaign: %w", err)
		}
	}
	return filepath.Join(dir, "newsletter.yaml"), nil
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
}
