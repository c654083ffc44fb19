package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/repermit/repermit"
)

// CheckFeasible refuses a campaign whose initial mails, to recipients
// perDomain (domain -> count) at its rate limits, cannot all be out
// min_answer_window before the deadline (see repermit.Campaign.Project).
// The problem is on the line of rate (or of the deadline when no rate is
// written) and names the projected finish and what would fit: a
// rate.per_second, a domain's per-minute limit, or a later deadline.
func (f *File) CheckFeasible(perDomain map[string]int64, now time.Time) error {
	c := &f.Campaign
	p := c.Project(perDomain, now)
	if p.Feasible() {
		return f.checkWaves(p)
	}
	var fit []string
	if p.Domain != "" {
		if n := c.FitDomainPerMinute(perDomain[p.Domain], now); n > 0 {
			fit = append(fit, fmt.Sprintf("rate.per_domain_per_minute %s: %d", p.Domain, n))
		}
	}
	if ps := c.FitPerSecond(perDomain, now); ps > 0 && p.Domain == "" {
		fit = append(fit, fmt.Sprintf("rate.per_second: %d", ps))
	}
	fit = append(fit, fmt.Sprintf("a deadline of at least %s after the start (min_answer_window %s after the last initial mail)",
		fmtDuration(p.Finish.Add(p.Window).Sub(c.StartAt)), fmtDuration(p.Window)))
	by := "rate.per_second"
	if p.Domain != "" {
		by = "rate.per_domain_per_minute for " + p.Domain
	}
	if c.Rate.PerSecond == 0 && p.Domain == "" {
		by = "the start"
	}
	line := f.rateLine
	key := "rate"
	if line == 0 {
		line, key = f.deadlineLine, "deadline"
	}
	msg := fmt.Sprintf("%s: the last of %d initial mails would leave at %s (%s after the start, limited by %s), %s before the deadline %s, less than min_answer_window %s; would fit: %s",
		key, p.Recipients, p.Finish.UTC().Format(time.RFC3339), fmtDuration(p.Sending), by,
		fmtDuration(max(p.Left, 0)), c.Deadline.UTC().Format(time.RFC3339), fmtDuration(p.Window), strings.Join(fit, ", or "))
	if p.Left < 0 {
		msg = strings.Replace(msg, fmtDuration(0)+" before the deadline", fmtDuration(-p.Left)+" after the deadline", 1)
	}
	return Problems{{File: f.Path, Line: line, Msg: msg}}
}

// checkWaves refuses a campaign whose waves, each sent at the rate of p
// and followed by waves.observe, leave less than min_answer_window after
// the last wave's last mail. The problem is on the line of waves and
// names the waves, their observation time and the deadline that fits.
func (f *File) checkWaves(p repermit.Projection) error {
	c := &f.Campaign
	w := c.Waves
	if w == nil || p.Recipients == 0 {
		return nil
	}
	n := w.Count(p.Recipients)
	observing := time.Duration(n-1) * w.Observe
	finish := p.Finish.Add(observing)
	left := c.Deadline.Sub(finish)
	if left >= p.Window {
		return nil
	}
	where := fmt.Sprintf("%s before the deadline", fmtDuration(max(left, 0)))
	if left < 0 {
		where = fmt.Sprintf("%s after the deadline", fmtDuration(-left))
	}
	msg := fmt.Sprintf("waves: %d recipients make %d waves (pilot %d); %d observation times of %s and %s of sending put the last wave's last mail at %s, %s %s, less than min_answer_window %s; would fit: a deadline of at least %s after the start, a shorter waves.observe, or fewer waves (a larger pilot or grow)",
		p.Recipients, n, w.Pilot, n-1, fmtDuration(w.Observe), fmtDuration(p.Sending), finish.UTC().Format(time.RFC3339),
		where, c.Deadline.UTC().Format(time.RFC3339), fmtDuration(p.Window), fmtDuration(finish.Add(p.Window).Sub(c.StartAt)))
	return Problems{{File: f.Path, Line: f.wavesLine, Msg: msg}}
}

// fmtDuration writes d in the units of a campaign file: days, hours,
// minutes, seconds ("7d", "1h30m", "8m20s").
func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		n    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.n {
			fmt.Fprintf(&b, "%d%s", d/u.n, u.name)
			d %= u.n
		}
	}
	return b.String()
}
