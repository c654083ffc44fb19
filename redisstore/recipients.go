package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// Recipient reads one recipient. ENOTFOUND when the index is not part of
// the campaign.
func (s *Store) Recipient(ctx context.Context, id string, idx int64) (*repermit.Recipient, error) {
	if idx < 0 {
		return nil, repermit.Errorf(repermit.ENOTFOUND, "no recipient %d in %s", idx, id)
	}
	b := idx / BucketSize
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return nil, err
	}
	key := l.bucket(b)
	f := &slotFields[idx%BucketSize]
	for range maxTornReads {
		vals, err := s.hmget(ctx, key, f.first[:])
		if err != nil {
			return nil, unavailable("recipient "+id, err)
		}
		code, _ := vals[0].(string)
		if code == "" {
			return nil, repermit.Errorf(repermit.ENOTFOUND, "no recipient %d in %s", idx, id)
		}
		d, _ := vals[1].(string)
		e, _ := vals[2].(string)
		answered, long := mayHaveAnswer(code), len(e) >= maxPacked
		if !answered && !long {
			return s.buildRecipient(ctx, id, idx, code, d+e, "")
		}
		// An answered recipient's a, and the f and g of a row of 128
		// packed bytes or more (see row.go), come in a second round trip
		// rather than asking every read for fields that are nearly always
		// missing. s and d come again with them: an erasure changes s, a
		// purge d, and the row is read anew if either happened in
		// between. a may have changed too (a change of topics), and is
		// then the newer answer of the same row. e is not read again: it
		// relies on nothing changing e, f or g of a row without changing
		// s or d (rows are written whole at import, erased with a new s,
		// purged with a new d).
		second := f.answer[:]
		switch {
		case answered && long:
			second = f.all[:]
		case long:
			second = f.rest[:]
		}
		more, err := s.hmget(ctx, key, second)
		if err != nil {
			return nil, unavailable("recipient "+id, err)
		}
		if code2, _ := more[0].(string); code2 != code {
			continue
		}
		if d2, _ := more[1].(string); d2 != d {
			continue
		}
		more = more[2:]
		answer := ""
		if answered {
			answer, _ = more[0].(string)
			more = more[1:]
		}
		if long {
			fv, _ := more[0].(string)
			gv, _ := more[1].(string)
			e += fv + gv
		}
		return s.buildRecipient(ctx, id, idx, code, d+e, answer)
	}
	return nil, repermit.Errorf(repermit.EUNAVAILABLE, "recipient %d of %s changed during %d reads", idx, id, maxTornReads)
}

// A recipient read asks Redis for s, d and e only. Every field of an
// HMGET is looked up by a scan of the bucket's listpack from its start,
// and a field the bucket does not hold costs a scan of all of it: on the
// bench's buckets about 2.4 µs against 0.7 for a field found early, and
// the HMGET of all six fields took 9.8 µs in INFO commandstats during
// bench web. a exists only once the recipient answered, which s tells
// (mayHaveAnswer); f and g only for rows of more than 128 packed bytes,
// which a full e tells (row.go fills each field to maxPacked before the
// next; a full e is all a row of exactly 128 bytes has). Most pages are
// of recipients who have not answered yet, with short rows: one HMGET of
// three fields.

// mayHaveAnswer reports whether a recipient with state code may have an
// answer field: every state but pending and sent, claimed or not. Only an
// answer writes a (the transition script, with the state it leads to,
// never pending or sent), and no transition leads from an answered state
// back to pending or sent (TestOnlyAnsweredStatesHoldAnswers checks both
// against the state tables). An unknown code may.
func mayHaveAnswer(code string) bool {
	st, _ := publicState(code)
	return st != repermit.StatePending && st != repermit.StateSent
}

// maxTornReads bounds the reads of a row that keeps changing between its
// two round trips; one retry is all an erasure or a purge needs.
const maxTornReads = 3

// recipientFields are the HMGET fields of one slot, made and boxed once:
// go-redis takes a command's arguments as []any, and building and boxing
// the field names took a dozen allocations per read.
type recipientFields struct {
	first  [3]any    // s, d, e
	answer [3]any    // s, d, a
	rest   [4]any    // s, d, f, g
	all    [5]any    // s, d, a, f, g
	sde    [3]string // ReadForSend's first read
	sdefg  [5]string // and its read of a long row
}

// slotFields holds the fields of every slot of a bucket. It is built once
// and only read.
var slotFields = func() (t [BucketSize]recipientFields) {
	for i := range t {
		slot := strconv.Itoa(i)
		s, a, d, e, f, g := "s"+slot, "a"+slot, "d"+slot, "e"+slot, "f"+slot, "g"+slot
		t[i] = recipientFields{
			first:  [3]any{s, d, e},
			answer: [3]any{s, d, a},
			rest:   [4]any{s, d, f, g},
			all:    [5]any{s, d, a, f, g},
			sde:    [3]string{s, d, e},
			sdefg:  [5]string{s, d, e, f, g},
		}
	}
	return t
}()

// joinValues joins the string values of an HMGET, skipping the missing.
func joinValues(vals []any) string {
	var b strings.Builder
	for _, v := range vals {
		if s, ok := v.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

// buildRecipient makes a recipient of its stored fields: state code, data
// (the packed row, see row.go) and answer.
func (s *Store) buildRecipient(ctx context.Context, id string, idx int64, code, data, answer string) (*repermit.Recipient, error) {
	r := &repermit.Recipient{Campaign: id, Index: idx, Revision: revision(code, answer)}
	r.State, r.Step = publicState(code)
	if err := s.decode(ctx, id, r, data); err != nil {
		return nil, err
	}
	if answer != "" {
		parts := strings.SplitN(answer, "|", 3)
		r.AnsweredAt = parseMs(parts[0])
		if len(parts) > 1 && parts[1] != "" {
			r.Topics = strings.Split(parts[1], ",")
		}
		if len(parts) > 2 {
			r.LedgerID = parts[2]
		}
	}
	return r, nil
}

// revision is a recipient's Revision: its state code and its answer
// field, which every change of state or of topics rewrites. A code holds
// no '|'. The data fields change only with the code (an erasure) or in a
// purge, which keeps the address's hash and so the record's subject.
func revision(code, answer string) string { return code + "|" + answer }

// Bucket reads the recipients of bucket b, in index order.
func (s *Store) Bucket(ctx context.Context, id string, b int64) ([]*repermit.Recipient, error) {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return nil, err
	}
	m, err := s.rdb.HGetAll(ctx, l.bucket(b)).Result()
	if err != nil {
		return nil, unavailable("bucket "+id, err)
	}
	return s.bucketRecipients(ctx, id, b, m)
}

// bucketWithEvents is Bucket, and whether the campaign writes webhook
// events (EventsOn), in one round trip.
func (s *Store) bucketWithEvents(ctx context.Context, id string, b int64) ([]*repermit.Recipient, bool, error) {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return nil, false, err
	}
	var all *redis.MapStringStringCmd
	var on *redis.StringCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, l.bucket(b))
		on = p.HGet(ctx, s.metaKey(id), fEventsOn)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, unavailable("bucket "+id, err)
	}
	rs, err := s.bucketRecipients(ctx, id, b, all.Val())
	return rs, on.Val() == "1", err
}

// bucketRecipients makes the recipients of bucket b of its fields.
func (s *Store) bucketRecipients(ctx context.Context, id string, b int64, m map[string]string) ([]*repermit.Recipient, error) {
	out := make([]*repermit.Recipient, 0, len(m)/2)
	for slot := 0; slot < BucketSize; slot++ {
		k := strconv.Itoa(slot)
		code := m["s"+k]
		if code == "" {
			continue
		}
		r, err := s.buildRecipient(ctx, id, b*BucketSize+int64(slot), code, m["d"+k]+m["e"+k]+m["f"+k]+m["g"+k], m["a"+k])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func verdict(o outcome, id string, idx int64, what op) error {
	switch {
	case o.applied:
		return nil
	case o.busy:
		return fmt.Errorf("%s %s/%d: %w", what, id, idx, ErrBusy)
	case o.old == "":
		return repermit.Errorf(repermit.ENOTFOUND, "no recipient %d in %s", idx, id)
	default:
		st, _ := publicState(o.old)
		return fmt.Errorf("%s %s/%d (state %s): %w", what, id, idx, st, ErrNotAllowed)
	}
}

// MarkSent records that step k of a claimed recipient was accepted by the
// SMTP server.
func (s *Store) MarkSent(ctx context.Context, id string, idx int64, step int, now time.Time) error {
	b, slot := bucketOf(idx)
	out, err := s.transition(ctx, id, b, opSent, now, transitionArgs{step: step}, []slotChange{{slot: slot}})
	if err != nil {
		return err
	}
	return verdict(out[0], id, idx, opSent)
}

// Release gives up the lease of a claimed step after a temporary failure,
// so that the retry may claim it at once.
func (s *Store) Release(ctx context.Context, id string, idx int64, step int, now time.Time) error {
	b, slot := bucketOf(idx)
	out, err := s.transition(ctx, id, b, opRelease, now, transitionArgs{step: step}, []slotChange{{slot: slot}})
	if err != nil {
		return err
	}
	return verdict(out[0], id, idx, opRelease)
}

// Suppression reasons.
const (
	ReasonExpired      = "expired"
	ReasonDeclined     = "declined"
	ReasonBounced      = "bounced"
	ReasonUnsubscribed = "unsubscribed"
	ReasonImported     = "imported" // listed in a campaign's suppression file
)

func suppressEntry(r *repermit.Recipient, reason string, now time.Time, campaign string) string {
	h := r.AddressHash
	if h == "" && r.Email != "" {
		h = repermit.AddressHash(r.Email)
	}
	if h == "" {
		return ""
	}
	return h + "|" + reason + "|" + ms(now) + "|" + campaign + "|" + strconv.FormatInt(r.Index, 10)
}

// Bounce marks a recipient bounced, erases its address and suppresses it.
func (s *Store) Bounce(ctx context.Context, r *repermit.Recipient, now time.Time) error {
	return s.BounceFrom(ctx, r, now, "")
}

// BounceFrom is Bounce of a bounce reported by source (smtp, dsn, arf,
// webhook), which the webhook event names.
func (s *Store) BounceFrom(ctx context.Context, r *repermit.Recipient, now time.Time, source string) error {
	// The event carries the keyed hash of the address the same call
	// erases, so it is computed first (a bounce is only of a recipient
	// mailed, whose address is kept).
	subject, err := s.SubjectOf(ctx, r)
	if err != nil {
		return err
	}
	return s.erasing(ctx, r, opBounce, ReasonBounced, now, transitionArgs{answer: source}, subject)
}

// Suppress marks a recipient found on the suppression list at send time.
func (s *Store) Suppress(ctx context.Context, r *repermit.Recipient, now time.Time) error {
	return s.erasing(ctx, r, opSuppress, "", now, transitionArgs{}, "")
}

func (s *Store) erasing(ctx context.Context, r *repermit.Recipient, o op, reason string, now time.Time, a transitionArgs, subject string) error {
	b, slot := bucketOf(r.Index)
	entry := ""
	if reason != "" {
		entry = suppressEntry(r, reason, now, r.Campaign)
	}
	out, err := s.transition(ctx, r.Campaign, b, o, now, a, []slotChange{{slot: slot, suppress: entry, subject: subject}})
	if err != nil {
		return err
	}
	if err := verdict(out[0], r.Campaign, r.Index, o); err != nil {
		return err
	}
	return s.drainShard(ctx, r.Campaign, b)
}

// drainShard empties the suppression outbox of bucket b's shard and, in a
// shard other than home, takes its queued records and events home
// (shardqueue.go).
func (s *Store) drainShard(ctx context.Context, id string, b int64) error {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return err
	}
	k := l.shardOf(b)
	if err := s.drainSuppression(ctx, l, k); err != nil {
		return err
	}
	if k == 0 {
		return nil
	}
	if _, err := s.drainLedger(ctx, l, k); err != nil {
		return err
	}
	return s.drainEvents(ctx, l, k)
}

// Answer is a recipient's reply from the web page or List-Unsubscribe.
type Answer struct {
	Campaign      string
	Index         int64
	State         repermit.State // confirmed, declined or unsubscribed
	Topics        []string
	At            time.Time
	IP            string
	UserAgent     string
	WordingSHA256 string
	// Wording is the page WordingSHA256 hashes, kept once per campaign
	// (nil: the caller knows it is kept already, or there is none).
	Wording []byte
	// Current is the recipient as the caller read it, if it did; it saves
	// Record a round trip. The answer is written only if the recipient is
	// still at Current's Revision (else Record reads it again), so a
	// stale Current cannot cause a wrong transition or a wrong record.
	Current *repermit.Recipient
}

// AnswerResult tells what the answer did.
type AnswerResult struct {
	Recipient *repermit.Recipient // after the call
	Changed   bool                // false for a replay or a refused change
	Record    *repermit.ConsentRecord
}

// Record applies an answer and appends its consent record to the ledger in
// one atomic step. A confirmed recipient who confirms other topics changes
// them: the record carries the topics before and after. A replay, or an
// answer the state does not allow (declined → confirmed), changes nothing
// and reports the recorded state. After the deadline only a confirmed
// recipient may answer (change topics, decline, unsubscribe); anyone else
// gets EGONE.
func (s *Store) Record(ctx context.Context, a Answer) (AnswerResult, error) {
	var o op
	reason := ""
	switch a.State {
	case repermit.StateConfirmed:
		o = opConfirm
	case repermit.StateDeclined:
		o, reason = opDecline, ReasonDeclined
	case repermit.StateUnsubscribed:
		o, reason = opUnsubscribe, ReasonUnsubscribed
	default:
		return AnswerResult{}, repermit.Errorf(repermit.EINVALID, "answer %q is not one of confirmed, declined, unsubscribed", a.State)
	}
	cur := a.Current
	if cur == nil || cur.Campaign != a.Campaign || cur.Index != a.Index {
		cur = nil
	}
	// The record is made from the recipient as read (its topics before,
	// its subject), and written only if the recipient is still at that
	// revision; else it is read again and the answer made anew.
	for range maxTornReads {
		if cur == nil {
			var err error
			if cur, err = s.Recipient(ctx, a.Campaign, a.Index); err != nil {
				return AnswerResult{}, err
			}
		}
		a.Current = cur
		res, err := s.recordAt(ctx, a, o, reason)
		if !errors.Is(err, errRecipientChanged) {
			return res, err
		}
		cur = nil
	}
	return AnswerResult{}, repermit.Errorf(repermit.EUNAVAILABLE, "recipient %d of %s changed during %d answers, try again", a.Index, a.Campaign, maxTornReads)
}

// revisionOf is the revision an answer was made from, "" when its caller
// gave none.
func revisionOf(a Answer) string {
	if a.Current == nil {
		return ""
	}
	return a.Current.Revision
}

// recordAt is Record of an answer made from the recipient a.Current.
func (s *Store) recordAt(ctx context.Context, a Answer, o op, reason string) (AnswerResult, error) {
	cur := a.Current
	var before []string
	if cur.State == repermit.StateConfirmed {
		before = cur.Topics
	}
	if cur.State == a.State && (a.State != repermit.StateConfirmed || sameTopics(before, a.Topics)) {
		return AnswerResult{Recipient: cur}, nil // replay: nothing to write
	}
	b, slot := bucketOf(a.Index)
	entry := ""
	if reason != "" {
		entry = suppressEntry(cur, reason, a.At, a.Campaign)
	}
	rec, applied, err := s.appendAnswer(ctx, a, o, b, slot, entry, strings.Join(a.Topics, ","), before)
	if err != nil {
		return AnswerResult{}, err
	}
	if !applied {
		after, err := s.Recipient(ctx, a.Campaign, a.Index)
		if err != nil {
			return AnswerResult{}, err
		}
		switch after.State {
		case repermit.StateExpired, repermit.StateUnreached, repermit.StatePending, repermit.StateSent:
			// Refused although neither answered nor final: past the
			// deadline, where only the confirmed may still answer.
			return AnswerResult{Recipient: after}, repermit.Errorf(repermit.EGONE, "recipient %d of %s is %s after the deadline", a.Index, a.Campaign, after.State)
		}
		return AnswerResult{Recipient: after}, nil
	}
	if entry != "" {
		l, err := s.layoutOf(ctx, a.Campaign)
		if err != nil {
			return AnswerResult{}, err
		}
		if err := s.drainSuppression(ctx, l, l.shardOf(b)); err != nil {
			return AnswerResult{}, err
		}
	}
	// The script applied exactly this change, so the result is known
	// without reading it back.
	after := *cur
	after.State, after.Step, after.AnsweredAt, after.Topics = a.State, 0, rec.At, nil
	after.Revision = "" // the stored one names the record's id, not known here
	if a.State == repermit.StateConfirmed {
		after.Topics = a.Topics
	} else {
		after.Email, after.AddressHash, after.Name, after.Locale, after.Extra = "", "", "", "", nil
	}
	return AnswerResult{Recipient: &after, Changed: true, Record: rec}, nil
}

// sameTopics reports whether two topic choices hold the same topics.
func sameTopics(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, t := range a {
		if !slices.Contains(b, t) {
			return false
		}
	}
	return true
}

// queueAnswer is appendAnswer in shard k other than home: the transition
// queues the record in the shard, atomically with the state change, and
// drainLedger then appends it to the log. A failed drain is not the
// answer's failure: the record is kept in the queue, and the next drain
// (of the next answer, the webhooks, the checkpointer) appends it; the
// record returned then has Seq 0.
func (s *Store) queueAnswer(ctx context.Context, l layout, k int64, a Answer, o op, b int64, slot, entry, topics string, before []string) (*repermit.ConsentRecord, bool, error) {
	if a.Wording != nil {
		if err := s.keepWording(ctx, a.Campaign, a.WordingSHA256, a.Wording); err != nil {
			return nil, false, err
		}
	}
	subject, err := s.subjectOf(ctx, a)
	if err != nil {
		return nil, false, err
	}
	rec := repermit.ConsentRecord{
		Campaign: a.Campaign, Recipient: a.Index, Subject: subject, Answer: a.State,
		TopicsBefore: before, Topics: a.Topics, At: a.At.UTC().Truncate(time.Millisecond), IP: a.IP, UserAgent: a.UserAgent,
		Wording: a.WordingSHA256,
	}
	out, err := s.transition(ctx, a.Campaign, b, o, a.At, transitionArgs{answer: topics, ledgerJSON: rec.Canonical(), revision: revisionOf(a)},
		[]slotChange{{slot: slot, suppress: entry}})
	if err != nil {
		return nil, false, err
	}
	if !out[0].applied {
		return nil, false, nil
	}
	// A failed drain leaves the record in the queue (see above), so its
	// error is not the answer's.
	if drained, err := s.drainLedger(ctx, l, k); err == nil {
		for _, d := range drained {
			if d.Recipient == rec.Recipient && d.At.Equal(rec.At) && d.Answer == rec.Answer {
				rec.Seq = d.Seq
			}
		}
	}
	return &rec, true, nil
}

// subjectOf returns the consent log subject of the answering recipient:
// the keyed hash of its address, or, once retention purged the address (a
// confirmed recipient keeps only its SHA-256), the subject of its last
// record, which its answer field points to, so that a withdrawal after
// the purge is still found among that person's records. "" when neither
// is known.
func (s *Store) subjectOf(ctx context.Context, a Answer) (string, error) {
	if a.Current == nil {
		return "", nil
	}
	r := *a.Current
	r.Campaign, r.Index = a.Campaign, a.Index
	return s.SubjectOf(ctx, &r)
}

// sleep waits d or until ctx ends, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ExpireBucket ends bucket b at the deadline, in one script call: every
// recipient mailed and still silent (sent) becomes expired, its address
// erased and its hash put on the suppression list; every recipient the
// initial mail never reached (pending) becomes unreached and keeps its
// address, unsuppressed, for a later campaign. It returns how many of each.
// A recipient whose initial mail is claimed under a live lease is left as
// it is and the error wraps ErrBusy: call again once the sender recorded
// the mail or its lease ran out, so a mail accepted at the deadline is
// never counted as unreached.
func (s *Store) ExpireBucket(ctx context.Context, id string, b int64, now time.Time) (expired, unreached int, err error) {
	rs, events, err := s.bucketWithEvents(ctx, id, b)
	if err != nil {
		return 0, 0, err
	}
	changes := make([]slotChange, 0, len(rs))
	var candidates []*repermit.Recipient
	for _, r := range rs {
		if r.State == repermit.StatePending || r.State == repermit.StateSent {
			candidates = append(candidates, r)
		}
	}
	if len(candidates) == 0 {
		return 0, 0, nil
	}
	// The webhook event of an expiry names the recipient by the keyed hash
	// of the address the same call erases; a campaign without webhooks
	// spares the hashing.
	subjects := map[int64]string{}
	if events {
		if subjects, err = s.subjectsOf(ctx, candidates); err != nil {
			return 0, 0, err
		}
	}
	for _, r := range candidates {
		// The script decides per recipient whether the entry and the
		// subject are used: only for those it expires.
		changes = append(changes, slotChange{
			slot:     strconv.FormatInt(r.Index%BucketSize, 10),
			suppress: suppressEntry(r, ReasonExpired, now, id),
			subject:  subjects[r.Index],
		})
	}
	if len(changes) == 0 {
		return 0, 0, nil
	}
	out, err := s.transition(ctx, id, b, opExpire, now, transitionArgs{}, changes)
	if err != nil {
		return 0, 0, err
	}
	busy := 0
	queued := make([]string, 0, len(out))
	for i, o := range out {
		if o.busy {
			busy++
		}
		if !o.applied {
			continue
		}
		if st, _ := publicState(o.old); st == repermit.StatePending {
			unreached++
		} else {
			expired++
			if e := changes[i].suppress; e != "" {
				queued = append(queued, e)
			}
		}
	}
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	s.settleSuppression(ctx, l.supp(l.shardOf(b)), queued)
	if busy > 0 {
		return expired, unreached, fmt.Errorf("expire %s bucket %d: %d initial mails in flight: %w", id, b, busy, ErrBusy)
	}
	return expired, unreached, nil
}

// Ledger calls fn for each consent record of a campaign in order.
func (s *Store) Ledger(ctx context.Context, id string, fn func(repermit.ConsentRecord, string) error) error {
	start := "-"
	for {
		msgs, err := s.rdb.XRangeN(ctx, s.ledgerKey(id), start, "+", 1000).Result()
		if err != nil {
			return unavailable("ledger "+id, err)
		}
		for _, m := range msgs {
			raw, _ := m.Values["rec"].(string)
			rec, err := repermit.DecodeStoredRecord([]byte(raw))
			if err != nil {
				return fmt.Errorf("ledger %s: record %s: %w", id, m.ID, err)
			}
			if err := fn(rec, m.ID); err != nil {
				return err
			}
		}
		if len(msgs) < 1000 {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}
