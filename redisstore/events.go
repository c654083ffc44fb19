package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
)

// The webhook outbox of a campaign with webhooks is a stream beside its
// consent log. The consent log holds the answers; the outbox holds what
// else the CRM is told: bounces, complaints, expiries and the waves'
// pauses. Each entry is written by the same script as the change it
// reports (transitionScript, feedbackScript, stopWavesScript), so there
// is no change without its event, nor an event without its change.
//
// An entry's fields:
//
//	n    its number in the campaign's outbox, 1, 2, … (meta field evn)
//	l    how many consent records the log held when it was written: it
//	     goes after record l and before record l+1, which orders it
//	     against the answers exactly, whatever the clocks
//	t    bounced, complained, expired or paused
//	r    recipient index (not for paused)
//	at   unix ms of the change
//	s    subject: the keyed address hash (consentlog.Subject), "" if unknown
//	src  where a bounce or complaint was reported: smtp, dsn, arf, webhook
//	stop the pause (WaveStop JSON), for paused
//
// A campaign launched without webhooks (meta field evq unset, also every
// campaign launched before the outbox) writes nothing to it.

// emitLua defines emit(meta, stream, fields), which appends one event to
// a campaign's outbox if the campaign has webhooks; whether it has is
// read once per script call. The meta fields are the Go constants'.
var emitLua = fmt.Sprintf(`
local evOn = nil
local evQueued = false
-- eventsOn reports whether the campaign of meta has webhooks, read once a
-- call: a caller checks it before it builds an event's fields.
local function eventsOn(meta)
  if evOn == nil then evOn = redis.call('HGET', meta, %[1]s) == '1' end
  return evOn
end
local function emit(meta, stream, fields)
  if not eventsOn(meta) then return end
  if evQueued then
    -- A shard other than home queues the event; drainShard numbers it
    -- when it moves it to the outbox.
    redis.call('XADD', stream, '*', unpack(fields))
    return
  end
  local n = redis.call('HINCRBY', meta, %[2]s, 1)
  local l = redis.call('HGET', meta, %[3]s) or '0'
  redis.call('XADD', stream, '*', 'n', n, 'l', l, unpack(fields))
end
`, luaString(fEventsOn), luaString(fEvents), luaString(fLedgerSeq))

// Types of outbox events.
const (
	EventBounced    = "bounced"
	EventComplained = "complained"
	EventExpired    = "expired"
	EventPaused     = "paused"
)

// Event is one entry of a campaign's webhook outbox.
type Event struct {
	StreamID string
	N        int64 // number in the outbox, from 1
	// After is how many consent records precede the event.
	After     int64
	Type      string
	Recipient int64 // -1 for a campaign's event
	At        time.Time
	Subject   string
	Source    string
	Stop      *WaveStop // paused
}

func parseEvent(m redis.XMessage) (Event, error) {
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	num := func(k string) int64 { v, _ := strconv.ParseInt(str(k), 10, 64); return v }
	e := Event{
		StreamID: m.ID, N: num("n"), After: num("l"), Type: str("t"), Recipient: -1,
		At: time.UnixMilli(num("at")).UTC(), Subject: str("s"), Source: str("src"),
	}
	if _, ok := m.Values["r"]; ok {
		e.Recipient = num("r")
	}
	if js := str("stop"); js != "" {
		var st WaveStop
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			return Event{}, fmt.Errorf("outbox event %s: %w", m.ID, err)
		}
		e.Stop = &st
	}
	if e.N == 0 || e.Type == "" {
		return Event{}, fmt.Errorf("outbox event %s: fields n and t missing", m.ID)
	}
	return e, nil
}

// WebhookItem is one thing to deliver: a consent record (Record set) or
// an outbox event (Event set).
type WebhookItem struct {
	Record   []byte // as stored in the consent log
	LedgerID string // the record's stream id
	Event    *Event
}

// WebhookItems returns up to max items webhook st has yet to deliver, in
// the one order every webhook of the campaign gets them: consent records
// in log order, each outbox event right after the records that were in
// the log when it was written. Both streams are read in one transaction,
// so an event is never seen without the records before it.
func (s *Store) WebhookItems(ctx context.Context, id string, st WebhookState, max int64) ([]WebhookItem, error) {
	after := func(pos string) string {
		if pos == "" {
			return "-"
		}
		return "(" + pos
	}
	if err := s.drainQueuesOf(ctx, id); err != nil {
		return nil, err
	}
	var recs, evs *redis.XMessageSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		recs = p.XRangeN(ctx, s.ledgerKey(id), after(st.Position), "+", max)
		evs = p.XRangeN(ctx, s.eventsKey(id), after(st.EventPosition), "+", max)
		return nil
	})
	if err != nil {
		return nil, unavailable("webhook items "+id, err)
	}
	rs, es := recs.Val(), evs.Val()
	// A page that came back full may have more behind it; the merge stops
	// where it would need them.
	moreRecs, moreEvs := int64(len(rs)) == max, int64(len(es)) == max
	var out []WebhookItem
	next := st.Delivered + 1 // the consent record rs[0] is, counted from 1
	for int64(len(out)) < max {
		var ev *Event
		if len(es) > 0 {
			e, err := parseEvent(es[0])
			if err != nil {
				return nil, err
			}
			ev = &e
		}
		switch {
		case ev != nil && (ev.After < next || (len(rs) == 0 && !moreRecs)):
			out = append(out, WebhookItem{Event: ev})
			es = es[1:]
		case len(rs) > 0 && (ev != nil || !moreEvs):
			raw, _ := rs[0].Values["rec"].(string)
			out = append(out, WebhookItem{Record: []byte(raw), LedgerID: rs[0].ID})
			rs = rs[1:]
			next++
		default:
			return out, nil
		}
	}
	return out, nil
}

// TrimEvents drops the outbox events that every one of the campaign's
// hooks webhooks has delivered.
func (s *Store) TrimEvents(ctx context.Context, id string, hooks int) error {
	if hooks <= 0 {
		return nil
	}
	fields := make([]string, hooks)
	for i := range fields {
		fields[i] = whField(i, "epos")
	}
	vals, err := s.rdb.HMGet(ctx, s.metaKey(id), fields...).Result()
	if err != nil {
		return unavailable("trim events "+id, err)
	}
	least := ""
	for _, v := range vals {
		pos, _ := v.(string)
		if pos == "" {
			return nil // a webhook has delivered none yet
		}
		if least == "" || streamIDLess(pos, least) {
			least = pos
		}
	}
	// MINID keeps the entry at least itself: one delivered event stays,
	// which costs nothing and keeps the trim free of off-by-one doubts.
	if err := s.rdb.XTrimMinID(ctx, s.eventsKey(id), least).Err(); err != nil {
		return unavailable("trim events "+id, err)
	}
	return nil
}

// streamIDLess compares two stream ids "ms-seq".
func streamIDLess(a, b string) bool {
	split := func(x string) (uint64, uint64) {
		ms, seq, _ := strings.Cut(x, "-")
		m, _ := strconv.ParseUint(ms, 10, 64)
		q, _ := strconv.ParseUint(seq, 10, 64)
		return m, q
	}
	am, aq := split(a)
	bm, bq := split(b)
	return am < bm || (am == bm && aq < bq)
}

// SubjectOf returns the keyed address hash the consent log names r by:
// from its address while it is kept, else from its last consent record
// (a confirmed recipient after the retention purge keeps only that); ""
// when neither is left (an expired or bounced recipient, whose hash went
// out with that event). A record that does not parse, or names another
// recipient, also gives "" rather than an error: the answer, withdrawal
// or bounce the subject is wanted for must always go through.
func (s *Store) SubjectOf(ctx context.Context, r *repermit.Recipient) (string, error) {
	if r.Email != "" {
		subjects, err := s.subjects(ctx)
		if err != nil {
			return "", err
		}
		return subjects.Of(r.Email), nil
	}
	if r.LedgerID == "" {
		return "", nil
	}
	if strings.HasPrefix(r.LedgerID, "p") {
		return s.queuedSubject(ctx, r)
	}
	return s.recordSubject(ctx, r, s.ledgerKey(r.Campaign), r.LedgerID)
}

// recordSubject returns the subject of the record with stream id id in
// stream, if it is r's; "" when the record is gone, does not parse or
// names another recipient.
func (s *Store) recordSubject(ctx context.Context, r *repermit.Recipient, stream, id string) (string, error) {
	msgs, err := s.rdb.XRangeN(ctx, stream, id, id, 1).Result()
	if err != nil {
		return "", unavailable("subject of "+r.Campaign, err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	raw, _ := msgs[0].Values["rec"].(string)
	rec, err := repermit.DecodeStoredRecord([]byte(raw))
	if err != nil || rec.Recipient != r.Index {
		return "", nil
	}
	return rec.Subject, nil
}

// subjectsOf computes the subjects of recipients whose address is kept,
// with one read of the key.
func (s *Store) subjectsOf(ctx context.Context, rs []*repermit.Recipient) (map[int64]string, error) {
	out := make(map[int64]string, len(rs))
	var subjects *consentlog.Subjects
	for _, r := range rs {
		if r.Email == "" {
			continue
		}
		if subjects == nil {
			var err error
			if subjects, err = s.subjects(ctx); err != nil {
				return nil, err
			}
		}
		out[r.Index] = subjects.Of(r.Email)
	}
	return out, nil
}

// EventsOn reports whether campaign id writes webhook events to its
// outbox (it was launched with webhooks).
func (s *Store) EventsOn(ctx context.Context, id string) (bool, error) {
	v, err := s.rdb.HGet(ctx, s.metaKey(id), fEventsOn).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("events "+id, err)
	}
	return v == "1", nil
}
