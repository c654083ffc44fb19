package repermit

import (
	"fmt"
	"math"
)

// Funnel holds a campaign's key figures, each defined here once: `status`
// (its view and --json), the admin page and the demo's funnel all print
// these, so they agree on every campaign.
type Funnel struct {
	// Imported is the number of recipients; Counts adds up to it.
	Imported int64 `json:"imported"`
	// Mailed counts the recipients whose initial mail went to the SMTP
	// server: everyone but the pending (not yet), the unreached (never, by
	// the deadline) and the suppressed (found on the list at send time). A
	// bounce was mailed: the server refused the mail, now or later.
	Mailed int64 `json:"mailed"`
	// Answered counts the confirmed, declined and unsubscribed.
	Answered  int64 `json:"answered"`
	Confirmed int64 `json:"confirmed"`
	// Waiting counts the pending and sent: no answer yet, and still time.
	Waiting int64 `json:"waiting"`
	// ConfirmationRate is the re-permission rate: confirmed of imported,
	// in percent.
	ConfirmationRate float64 `json:"confirmation_rate"`
	// MailedConfirmationRate is confirmed of mailed, in percent.
	MailedConfirmationRate float64 `json:"mailed_confirmation_rate"`
	// AnswerRate is answered of mailed, in percent.
	AnswerRate float64 `json:"answer_rate"`

	counts Counts
}

// NewFunnel computes the figures of a campaign that imported recipients
// and counts them per state.
func NewFunnel(imported int64, c Counts) Funnel {
	f := Funnel{
		Imported:  imported,
		Mailed:    imported - c[StatePending] - c[StateUnreached] - c[StateSuppressed],
		Answered:  c[StateConfirmed] + c[StateDeclined] + c[StateUnsubscribed],
		Confirmed: c[StateConfirmed],
		Waiting:   c[StatePending] + c[StateSent],
		counts:    c,
	}
	f.ConfirmationRate = Percent(f.Confirmed, f.Imported)
	f.MailedConfirmationRate = Percent(f.Confirmed, f.Mailed)
	f.AnswerRate = Percent(f.Answered, f.Mailed)
	return f
}

// Share is the percentage of the imported recipients in state s.
func (f Funnel) Share(s State) float64 { return Percent(f.counts[s], f.Imported) }

// Percent is n of of in percent, rounded to one decimal as every report
// prints it, and 0 when of is 0.
func Percent(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return math.Round(float64(n)*1000/float64(of)) / 10
}

// Summary is the funnel in one line, as status and the demo print it.
func (f Funnel) Summary() string {
	return fmt.Sprintf("mailed %d; answered %d (%.1f%% of mailed); confirmed %d: %.1f%% of mailed, re-permission rate %.1f%% of imported",
		f.Mailed, f.Answered, f.AnswerRate, f.Confirmed, f.MailedConfirmationRate, f.ConfirmationRate)
}
