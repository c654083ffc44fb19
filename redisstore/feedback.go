package redisstore

import (
	"context"
	"time"

	"github.com/repermit/repermit"
)

// Feedback is one report about a mail that came back after it was sent: a
// bounce or a complaint, from the SMTP reply, a DSN, an ARF report or an
// ESP webhook.
type Feedback struct {
	Campaign string
	Index    int64
	// Key identifies the report, e.g. the SHA-256 of a DSN as received; a
	// second report with the same key changes nothing.
	Key string
	// Kind is FeedbackHard, FeedbackSoft or FeedbackComplaint.
	Kind string
	// Source is where it came from: "smtp", "dsn", "arf" or "webhook".
	Source string
	At     time.Time
	// Subject is the keyed address hash (SubjectOf) a complaint's webhook
	// event names the recipient by; "" if not known.
	Subject string
}

// Kinds of feedback.
const (
	FeedbackHard      = "bounced"
	FeedbackSoft      = "soft"
	FeedbackComplaint = "complaint"
	// FeedbackDeferred is a temporary SMTP failure (4xx) of a campaign
	// sent in waves; it counts toward the wave's deferrals only.
	FeedbackDeferred = "deferred"
)

// FeedbackSeenTTL is how long a report's key is remembered after the last
// report of its campaign.
const FeedbackSeenTTL = 90 * 24 * time.Hour

func (s *Store) feedbackSeenKey(id string) string { return s.prefix + ":{" + id + "}:fb:seen" }
func (s *Store) softKey(id string) string         { return s.prefix + ":{" + id + "}:fb:soft" }

// feedbackScript records a report once.
//
// KEYS[1] seen set of report keys, KEYS[2] soft bounce counts per
// recipient, KEYS[3] campaign meta hash, KEYS[4] webhook event outbox.
// ARGV[1] report key, ARGV[2] kind, ARGV[3] source, ARGV[4] recipient
// index, ARGV[5] seen-set TTL in seconds, ARGV[6] subject, ARGV[7] time
// of the report (unix ms).
//
// Returns {first, soft}: first is 1 when the report was new (and counted
// in meta field fb:<kind>:<source>, and for a campaign sent in waves in
// wv:<wave>:<kind>, whenever it arrives; a new complaint also writes its
// webhook event), soft the recipient's soft bounce count after it.
var feedbackScript = luaScript(emitLua + `
local st = redis.call('HGET', KEYS[3], F_STATUS)
if not st or st == STATUS_IMPORTING then return {-1, 0} end
local first = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local soft = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0')
if first == 1 then
  if ARGV[2] ~= 'deferred' then
    redis.call('HINCRBY', KEYS[3], 'fb:' .. ARGV[2] .. ':' .. ARGV[3], 1)
  end
  if ARGV[2] == 'soft' then soft = redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
  local cfg = redis.call('HGET', KEYS[3], F_CONFIG)
  local idx = tonumber(ARGV[4])
` + waveOfLua + `
  if k then redis.call('HINCRBY', KEYS[3], F_WAVE_PFX .. k .. ':' .. ARGV[2], 1) end
  if ARGV[2] == 'complaint' then
    emit(KEYS[3], KEYS[4], {'t', 'complained', 'r', idx, 'at', ARGV[7], 's', ARGV[6], 'src', ARGV[3]})
  end
end
return {first, soft}
`)

// RecordFeedback counts a report once per key: it returns whether this
// call was the first with f.Key, and the recipient's soft bounce count
// after it. The state change a report causes (Bounce, Record of an
// unsubscribe) is the caller's, through the transition path, and is
// itself idempotent; a caller that makes the change first and records
// the report after it processes a report that is retried after a crash
// exactly once. ENOTFOUND for an unknown campaign.
func (s *Store) RecordFeedback(ctx context.Context, f Feedback) (first bool, soft int64, err error) {
	keys := []string{s.feedbackSeenKey(f.Campaign), s.softKey(f.Campaign), s.metaKey(f.Campaign), s.eventsKey(f.Campaign)}
	res, err := feedbackScript.Run(ctx, s.rdb, keys, f.Key, f.Kind, f.Source, f.Index, int64(FeedbackSeenTTL/time.Second),
		f.Subject, f.At.UnixMilli()).Int64Slice()
	if err != nil {
		return false, 0, unavailable("record feedback for "+f.Campaign, err)
	}
	if res[0] < 0 {
		return false, 0, repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", f.Campaign)
	}
	return res[0] == 1, res[1], nil
}

// feedbackSources are where reports come from, in the order status shows
// them.
func feedbackSources() []string { return []string{"smtp", "dsn", "arf", "webhook"} }

// ComplaintRateLimit is the spam complaint rate Gmail and Yahoo tolerate
// from bulk senders (0.3 %); above it their mail goes to spam or is
// refused.
const ComplaintRateLimit = 0.003

// Mailed is the number of recipients who were sent the initial mail (or
// whose server refused it), as repermit.Funnel defines it.
func (s Stats) Mailed() int64 { return repermit.NewFunnel(s.Imported, s.Counts).Mailed }

// FeedbackBy returns the reports of one kind by source.
func (s Stats) FeedbackBy(kind string) map[string]int64 {
	sources := feedbackSources()
	out := make(map[string]int64, len(sources))
	for _, src := range sources {
		out[src] = s.Feedback[kind+":"+src]
	}
	return out
}

// ComplaintRate is complaint reports per recipient mailed. Gmail and
// Yahoo count per message delivered, reminders included, so this is an
// upper bound of the rate they see.
func (s Stats) ComplaintRate() float64 {
	mailed := s.Mailed()
	if mailed <= 0 {
		return 0
	}
	var n int64
	for _, v := range s.FeedbackBy(FeedbackComplaint) {
		n += v
	}
	return float64(n) / float64(mailed)
}
