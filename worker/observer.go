package worker

import (
	"sync/atomic"
	"time"

	"github.com/repermit/repermit/mailer"
)

// Observer is told what the engine does, for metrics. Calls come from many
// goroutines at once and must not block.
type Observer interface {
	// Sent: the SMTP server accepted mail step of a campaign's recipient.
	Sent(campaign string, step int)
	// Failed: a send failed with the given class (Temporary,
	// RecipientRejected or MessageRejected).
	Failed(campaign string, class mailer.Class)
	// Throttled: n recipients were put back for later by the rate limits
	// or a domain penalty; this is pacing, not failure.
	Throttled(campaign string, n int)
	// Suppressed: a recipient was found on the suppression list at send
	// time and not mailed.
	Suppressed(campaign string)
	// Expired: n recipients expired at the deadline.
	Expired(campaign string, n int)
	// SMTPDuration: one SMTP transaction took d, whatever its outcome.
	SMTPDuration(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Sent(string, int)            {}
func (nopObserver) Failed(string, mailer.Class) {}
func (nopObserver) Throttled(string, int)       {}
func (nopObserver) Suppressed(string)           {}
func (nopObserver) Expired(string, int)         {}
func (nopObserver) SMTPDuration(time.Duration)  {}

// Counters is an Observer that adds everything up across campaigns, for
// tests and simple metrics.
type Counters struct {
	SentN              atomic.Int64
	TemporaryN         atomic.Int64
	RecipientRejectedN atomic.Int64
	MessageRejectedN   atomic.Int64
	ThrottledN         atomic.Int64
	SuppressedN        atomic.Int64
	ExpiredN           atomic.Int64
}

func (c *Counters) Sent(string, int) { c.SentN.Add(1) }
func (c *Counters) Failed(_ string, class mailer.Class) {
	switch class {
	case mailer.Temporary:
		c.TemporaryN.Add(1)
	case mailer.RecipientRejected:
		c.RecipientRejectedN.Add(1)
	case mailer.MessageRejected:
		c.MessageRejectedN.Add(1)
	}
}
func (c *Counters) Throttled(_ string, n int) { c.ThrottledN.Add(int64(n)) }
func (c *Counters) Suppressed(string)         { c.SuppressedN.Add(1) }
func (c *Counters) Expired(_ string, n int)   { c.ExpiredN.Add(int64(n)) }

// SMTPDuration is not counted.
func (c *Counters) SMTPDuration(time.Duration) {}
