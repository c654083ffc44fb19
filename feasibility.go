package repermit

import (
	"math"
	"sort"
	"time"
)

// DefaultAnswerWindow is the least time recipients get to answer after the
// last initial mail, unless a campaign sets MinAnswerWindow: seven days, or
// half the campaign when that is shorter.
const DefaultAnswerWindow = 7 * 24 * time.Hour

// AnswerWindow returns the least time the campaign must leave between its
// last initial mail and its deadline.
func (c *Campaign) AnswerWindow() time.Duration {
	if c.MinAnswerWindow > 0 {
		return c.MinAnswerWindow
	}
	return min(DefaultAnswerWindow, c.Deadline.Sub(c.StartAt)/2)
}

// Projection is when the initial mails of a campaign can all be out, given
// its rate limits, and whether that leaves recipients the answer window.
type Projection struct {
	Recipients int64
	// Sending is how long the initial mails take from the start, reminders
	// that fall before their end included; zero without rate limits.
	Sending time.Duration
	// Finish is StartAt (or now, if later) plus Sending.
	Finish time.Time
	// Left is the time from Finish to the deadline; Window the least the
	// campaign must leave.
	Left, Window time.Duration
	// Domain is the recipient domain whose per-minute limit sets Sending,
	// "" when rate.per_second does.
	Domain string
}

// Feasible reports whether the last initial mail leaves the answer window.
func (p Projection) Feasible() bool { return p.Left >= p.Window }

// Project computes when the initial mails to the recipients perDomain
// (recipient domain -> count) can all be out, sending from the later of
// the campaign's start and from. The model is the limits alone: mails go
// at rate.per_second, and each domain at its per_domain_per_minute; a
// reminder due before the initial mails are out takes its share of the
// same rate (every recipient mailed by then, as if nobody answered). It is
// a lower bound: temporary failures and pauses only make it later.
func (c *Campaign) Project(perDomain map[string]int64, from time.Time) Projection {
	p := Projection{Window: c.AnswerWindow()}
	start := c.StartAt
	if from.After(start) {
		start = from
	}
	for _, n := range perDomain {
		p.Recipients += n
	}
	secs := 0.0
	if ps := c.Rate.PerSecond; ps > 0 {
		secs = float64(p.Recipients) / float64(ps)
	}
	domains := make([]string, 0, len(perDomain))
	for d := range perDomain {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		if lim := c.Rate.DomainLimit(d); lim > 0 {
			if s := float64(perDomain[d]) * 60 / float64(lim); s > secs {
				secs, p.Domain = s, d
			}
		}
	}
	if secs > 0 && p.Recipients > 0 {
		// Reminders due while the initial mails still go share their rate.
		base, rate := secs, float64(p.Recipients)/secs
		elapsed := start.Sub(c.StartAt).Seconds()
		for range c.Reminders {
			extra := 0.0
			for _, r := range c.Reminders {
				at := r.Seconds() - elapsed
				if at < secs {
					extra += math.Min(float64(p.Recipients), rate*math.Max(at, 0)) / rate
				}
			}
			secs = base + extra
		}
	}
	p.Sending = time.Duration(math.Ceil(secs)) * time.Second
	p.Finish = start.Add(p.Sending)
	p.Left = c.Deadline.Sub(p.Finish)
	return p
}

// FitPerSecond returns the least rate.per_second with which the initial
// mails to perDomain are out the answer window before the deadline, or 0
// when no per_second can do it (a domain's per-minute limit, or a deadline
// too close to the start).
func (c *Campaign) FitPerSecond(perDomain map[string]int64, from time.Time) int {
	fits := func(ps int) bool {
		cc := *c
		cc.Rate.PerSecond = ps
		return cc.Project(perDomain, from).Feasible()
	}
	var total int64
	for _, n := range perDomain {
		total += n
	}
	hi := int(max(total, 1))
	if !fits(hi) {
		return 0
	}
	lo := 1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fits(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// FitDomainPerMinute returns the least per-minute limit with which domain
// d's n recipients are mailed in the time the campaign allows before its
// answer window, or 0 when there is no time at all.
func (c *Campaign) FitDomainPerMinute(n int64, from time.Time) int {
	start := c.StartAt
	if from.After(start) {
		start = from
	}
	avail := c.Deadline.Add(-c.AnswerWindow()).Sub(start).Minutes()
	if avail <= 0 {
		return 0
	}
	return int(math.Ceil(float64(n) / avail))
}
