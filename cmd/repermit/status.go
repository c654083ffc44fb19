package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// statusJSON is the --json form of DESIGN.md.
type statusJSON struct {
	Campaign string                   `json:"campaign"`
	State    repermit.CampaignStatus  `json:"state"`
	Counts   map[repermit.State]int64 `json:"counts"`
	Imported int64                    `json:"imported"`
	Skipped  map[string]int64         `json:"skipped"`
	// Topics counts the confirmed recipients per topic they chose.
	Topics map[string]int64 `json:"topics,omitempty"`
	// Funnel holds the figures the admin page and the demo print too.
	Funnel repermit.Funnel `json:"funnel"`
	// Feedback counts bounce and complaint reports by kind ("bounced",
	// "soft", "complaint") and source ("smtp", "dsn", "arf", "webhook").
	Feedback map[string]map[string]int64 `json:"feedback"`
	// ComplaintRate is complaints per recipient mailed, beside the limit
	// Gmail and Yahoo tolerate.
	ComplaintRate      float64 `json:"complaint_rate"`
	ComplaintRateLimit float64 `json:"complaint_rate_limit"`
	// Webhooks is the delivery of each of the campaign's webhooks.
	Webhooks []webhookJSON `json:"webhooks,omitempty"`
	// Deadline, and while initial mails are pending their projected finish
	// and whether that leaves less than the answer window (behind).
	Deadline        time.Time  `json:"deadline"`
	ProjectedFinish *time.Time `json:"projected_finish,omitempty"`
	Behind          bool       `json:"behind,omitempty"`
	// Waves, for a campaign sent in waves: each wave's figures, the next
	// wave's time and why the waves stopped the campaign, if they did.
	Waves *redisstore.WavesReport `json:"waves,omitempty"`
}

type webhookJSON struct {
	URL       string `json:"url"`
	Delivered int64  `json:"delivered"`
	Backlog   int64  `json:"backlog"`
	Failures  int64  `json:"failures"` // failed attempts, retried
}

func webhooksJSON(c *repermit.Campaign, s redisstore.Stats) []webhookJSON {
	var out []webhookJSON
	for i, h := range c.Webhooks {
		out = append(out, webhookJSON{URL: h.URL, Delivered: s.Webhooks[i].Delivered + s.Webhooks[i].EventsDelivered, Backlog: s.WebhookBacklog(i), Failures: s.Webhooks[i].Failures})
	}
	return out
}

func feedbackJSON(s redisstore.Stats) map[string]map[string]int64 {
	return map[string]map[string]int64{
		redisstore.FeedbackHard:      s.FeedbackBy(redisstore.FeedbackHard),
		redisstore.FeedbackSoft:      s.FeedbackBy(redisstore.FeedbackSoft),
		redisstore.FeedbackComplaint: s.FeedbackBy(redisstore.FeedbackComplaint),
	}
}

func runStatus(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	watch := fs.Duration("watch", 0, "refresh every interval (e.g. 2s) until interrupted")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	st, closeStore, err := openStore(ctx, env.settings())
	if err != nil {
		return err
	}
	defer closeStore()
	for {
		c, err := st.Campaign(ctx, pos[0])
		if err != nil {
			return err
		}
		stats, err := st.Stats(ctx, c.ID)
		if err != nil {
			return err
		}
		timeline, err := st.Timeline(ctx, c.ID)
		if err != nil {
			return err
		}
		waves, err := st.WavesReport(ctx, c)
		if err != nil {
			return err
		}
		if *asJSON {
			var finish *time.Time
			behind := false
			if p, ok := projectFinish(c, stats, timeline, env.Now()); ok {
				finish, behind = &p.Finish, !p.Feasible()
			}
			if err := json.NewEncoder(env.Stdout).Encode(statusJSON{
				Campaign: c.ID, State: c.Status, Counts: stats.Counts, Imported: stats.Imported,
				Skipped:  map[string]int64{"invalid": stats.SkippedInvalid, "duplicate": stats.SkippedDuplicate, "suppressed": stats.SkippedSuppressed},
				Topics:   topicCounts(c, stats),
				Funnel:   repermit.NewFunnel(stats.Imported, stats.Counts),
				Feedback: feedbackJSON(stats), ComplaintRate: stats.ComplaintRate(),
				ComplaintRateLimit: redisstore.ComplaintRateLimit,
				Webhooks:           webhooksJSON(c, stats),
				Deadline:           c.Deadline, ProjectedFinish: finish, Behind: behind,
				Waves: waves,
			}); err != nil {
				return err
			}
		} else {
			if *watch > 0 && isTerminal(env.Stdout) {
				fmt.Fprint(env.Stdout, "\x1b[H\x1b[2J")
			}
			printStatus(env.Stdout, c, stats, timeline, env.Now())
			printWaves(env.Stdout, c, waves)
		}
		if *watch <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*watch):
		}
	}
}

func printStatus(w io.Writer, c *repermit.Campaign, s redisstore.Stats, timeline map[repermit.State]map[time.Time]int64, now time.Time) {
	fmt.Fprintf(w, "campaign %s  [%s]  deadline %s\n", c.ID, c.Status, c.Deadline.Format(time.RFC3339))
	for _, h := range webhooksJSON(c, s) {
		fmt.Fprintf(w, "webhook %s: %d events delivered, %d waiting, %d failed attempts\n", h.URL, h.Delivered, h.Backlog, h.Failures)
	}
	fmt.Fprintf(w, "imported %d (skipped: %d invalid, %d duplicate, %d suppressed)\n\n",
		s.Imported, s.SkippedInvalid, s.SkippedDuplicate, s.SkippedSuppressed)
	const width = 40
	f := repermit.NewFunnel(s.Imported, s.Counts)
	for _, state := range repermit.States() {
		n := s.Counts[state]
		bar := 0
		if s.Imported > 0 {
			bar = int(n * width / s.Imported)
		}
		fmt.Fprintf(w, "  %-13s %8d  %5.1f%%  %s\n", state, n, f.Share(state), strings.Repeat("█", bar))
	}
	for _, topic := range c.Topics {
		fmt.Fprintf(w, "    confirmed %-16s %8d\n", topic+":", s.Topics[topic])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, f.Summary())
	printFeedback(w, s)
	perMin := recentRate(timeline[repermit.StateSent], now, 5)
	fmt.Fprintf(w, "sending %.0f/min (last 5 min), answers %.0f/min\n", perMin,
		recentRate(timeline[repermit.StateConfirmed], now, 5)+recentRate(timeline[repermit.StateDeclined], now, 5)+recentRate(timeline[repermit.StateUnsubscribed], now, 5))
	if p, ok := projectFinish(c, s, timeline, now); ok {
		fmt.Fprintf(w, "initial mails: projected finish %s, deadline %s (%d left)\n",
			p.Finish.Format(time.RFC3339), c.Deadline.Format(time.RFC3339), p.Recipients)
		if !p.Feasible() {
			fmt.Fprintf(w, "WARNING: behind: the last initial mail would leave %s before the deadline, less than the answer window of %s; whoever is not mailed by the deadline ends unreached\n",
				max(p.Left, 0).Round(time.Second), p.Window)
		}
	}
	if left := c.Deadline.Sub(now); left > 0 {
		fmt.Fprintf(w, "deadline in %s\n", left.Round(time.Second))
	}
}

// printWaves shows each wave's recipients and reports, the next wave's
// time and why the waves paused the campaign.
func printWaves(w io.Writer, c *repermit.Campaign, r *redisstore.WavesReport) {
	if r == nil {
		return
	}
	s := c.Waves.Stop
	fmt.Fprintf(w, "\nwaves (observe %s; stop at bounces %s, complaints %s, deferrals %s):\n",
		c.Waves.Observe, thresholdText(s.Bounces), thresholdText(s.Complaints), thresholdText(s.Deferrals))
	for _, row := range r.Waves {
		f := row.Figures
		fmt.Fprintf(w, "  wave %-3d %-8s %7d recipients  bounces %d, complaints %d, deferrals %d\n",
			row.Wave, row.State, f.Recipients, f.Bounces, f.Complaints, f.Deferrals)
	}
	switch {
	case r.Stop != nil:
		fmt.Fprintf(w, "PAUSED: %s\n", r.StopText)
		fmt.Fprintf(w, "  `repermit resume %s` sends wave %d; `repermit resume %s --reset-thresholds` also counts the campaign's figures anew from it\n", c.ID, r.Stop.NextWave, c.ID)
	case r.Next > 0 && r.NextAt != nil:
		fmt.Fprintf(w, "next wave %d at %s\n", r.Next, r.NextAt.UTC().Format(time.RFC3339))
	case r.Next > 0:
		fmt.Fprintf(w, "next wave %d after wave %d is queued and observed\n", r.Next, r.Next-1)
	default:
		fmt.Fprintln(w, "every wave queued")
	}
}

func thresholdText(t repermit.Threshold) string {
	if !t.Set() {
		return "never"
	}
	return t.String()
}

// printFeedback shows the bounce and complaint reports by source and the
// complaint rate beside what Gmail and Yahoo tolerate.
func printFeedback(w io.Writer, s redisstore.Stats) {
	line := func(label, kind string, sources ...string) {
		by := s.FeedbackBy(kind)
		parts := make([]string, len(sources))
		for i, src := range sources {
			parts[i] = fmt.Sprintf("%s %d", src, by[src])
		}
		fmt.Fprintf(w, "%-14s %s\n", label, strings.Join(parts, ", "))
	}
	line("hard bounces:", redisstore.FeedbackHard, "smtp", "dsn", "webhook")
	line("soft bounces:", redisstore.FeedbackSoft, "dsn", "webhook")
	line("complaints:", redisstore.FeedbackComplaint, "arf", "webhook")
	rate := s.ComplaintRate()
	verdict := "within"
	if rate > redisstore.ComplaintRateLimit {
		verdict = "ABOVE"
	}
	fmt.Fprintf(w, "complaint rate %.2f%% of mailed, %s the %.1f%% Gmail and Yahoo tolerate\n",
		rate*100, verdict, redisstore.ComplaintRateLimit*100)
}

// projectFinish projects when the initial mails still pending will all be
// out: at the rate of the last five minutes while mail goes out, else at
// the campaign's rate.per_second. ok is false when nothing is pending, the
// campaign does not send, or no rate is known.
func projectFinish(c *repermit.Campaign, s redisstore.Stats, timeline map[repermit.State]map[time.Time]int64, now time.Time) (repermit.Projection, bool) {
	pending := s.Counts[repermit.StatePending]
	if pending == 0 || (c.Status != repermit.StatusRunning && c.Status != repermit.StatusPaused) || !now.Before(c.Deadline) {
		return repermit.Projection{}, false
	}
	cc := *c
	cc.Rate.PerDomainPerMinute = nil // the per-domain split of the pending is not kept
	if perSec := recentRate(timeline[repermit.StateSent], now, 5) / 60; perSec > 0 && c.StartAt.Before(now) {
		cc.Rate.PerSecond = max(1, int(perSec))
	}
	if cc.Rate.PerSecond <= 0 {
		return repermit.Projection{}, false
	}
	p := cc.Project(map[string]int64{"": pending}, now)
	p.Window = c.AnswerWindow()
	return p, true
}

// recentRate averages the entries per minute of a timeline over the last
// minutes full minutes before now.
func recentRate(tl map[time.Time]int64, now time.Time, minutes int) float64 {
	var n int64
	cur := now.UTC().Truncate(time.Minute)
	for i := 1; i <= minutes; i++ {
		n += tl[cur.Add(-time.Duration(i)*time.Minute)]
	}
	return float64(n) / float64(minutes)
}

// topicCounts lists every topic of the campaign, those nobody chose as 0.
func topicCounts(c *repermit.Campaign, s redisstore.Stats) map[string]int64 {
	if len(c.Topics) == 0 {
		return nil
	}
	out := make(map[string]int64, len(c.Topics))
	for _, t := range c.Topics {
		out[t] = s.Topics[t]
	}
	return out
}
