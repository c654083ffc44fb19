package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// The queues of shards other than home (shard.go): a transition there
// queues its consent record in P:{ID:k}:lq and its webhook event in
// P:{ID:k}:eq, in the same script as the state change. The functions here
// take them home, into the one consent log and the one outbox, so that
// the log, its checkpoints, proofs, exports and webhooks are those of a
// campaign of one shard.

// appendQueuedScript appends records queued in one shard to the consent
// log, if neither the log's head nor the shard's cursor moved since the
// caller read them (another drain, or an answer in home, was first).
//
// KEYS[1] home meta, KEYS[2] ledger stream. ARGV[1] the cursor's field
// (lq:<k>), ARGV[2] the cursor read ("" for none), ARGV[3] the head read,
// ARGV[4] the new head (leaf hash of the last record), ARGV[5] the queue
// id of the last record, ARGV[6…] the records in canonical form.
// Returns the records' ids in the log, or {'moved'}.
var appendQueuedScript = luaScript(`
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return {'moved'} end
if (redis.call('HGET', KEYS[1], F_LEDGER_HEAD) or '') ~= ARGV[3] then return {'moved'} end
local ids = {}
for i = 6, #ARGV do
  table.insert(ids, redis.call('XADD', KEYS[2], '*', 'rec', ARGV[i]))
end
redis.call('HSET', KEYS[1], F_LEDGER_HEAD, ARGV[4], ARGV[1], ARGV[5])
redis.call('HINCRBY', KEYS[1], F_LEDGER_SEQ, #ARGV - 5)
return ids
`)

// relinkScript points the answer fields of the recipients whose queued
// records reached the log at the records' ids in the log, and removes the
// records from the queue. An answer field that moved on meanwhile (a newer
// answer) is left as it is.
//
// KEYS[1] the shard's queue, KEYS[2…] buckets of the shard. ARGV quads:
// index into KEYS of the bucket, slot, queue id, log id.
var relinkScript = redis.NewScript(`
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  local f = 'a' .. ARGV[i + 1]
  local a = redis.call('HGET', key, f)
  local old = '|p' .. ARGV[i + 2]
  if a and string.sub(a, -#old) == old then
    redis.call('HSET', key, f, string.sub(a, 1, #a - #old) .. '|' .. ARGV[i + 3])
  end
  redis.call('XDEL', KEYS[1], ARGV[i + 2])
end
return 1
`)

// moveEventsScript moves events queued in one shard to the outbox,
// numbering them there as emit numbers home's own, if the shard's cursor
// did not move since the caller read it.
//
// KEYS[1] home meta, KEYS[2] outbox stream. ARGV[1] the cursor's field
// (eq:<k>), ARGV[2] the cursor read, ARGV[3] the queue id of the last
// event, ARGV[4…] each event's fields as a JSON array of names and values.
// Returns 1, or 0 if the cursor moved.
var moveEventsScript = luaScript(`
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
for i = 4, #ARGV do
  local n = redis.call('HINCRBY', KEYS[1], F_EVENTS, 1)
  local l = redis.call('HGET', KEYS[1], F_LEDGER_SEQ) or '0'
  redis.call('XADD', KEYS[2], '*', 'n', n, 'l', l, unpack(cjson.decode(ARGV[i])))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// drainPage is how many queued entries one script call takes home.
const drainPage = 256

// drainQueues takes every shard's queued records and events home. The
// webhook deliverer, the checkpointer and the expiry call it through their
// reads (WebhookItems, SyncTree, DrainSuppression), so that a queue a
// crashed process left behind is emptied by the next of them.
func (s *Store) drainQueues(ctx context.Context, l layout) error {
	if l.n == 1 {
		return nil
	}
	lens := make([][2]*redis.IntCmd, l.n)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k := int64(1); k < l.n; k++ {
			lens[k] = [2]*redis.IntCmd{p.XLen(ctx, l.ledgerQ(k)), p.XLen(ctx, l.eventsQ(k))}
		}
		return nil
	})
	if err != nil {
		return unavailable("drain "+l.id, err)
	}
	for k := int64(1); k < l.n; k++ {
		if lens[k][0].Val() > 0 {
			if _, err := s.drainLedger(ctx, l, k); err != nil {
				return err
			}
		}
		if lens[k][1].Val() > 0 {
			if err := s.drainEvents(ctx, l, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// drainQueuesOf is drainQueues of campaign id.
func (s *Store) drainQueuesOf(ctx context.Context, id string) error {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return err
	}
	return s.drainQueues(ctx, l)
}

// drainLedger appends the records queued in shard k to the consent log,
// in queue order, and returns them as appended (with their place in the
// log). Records at or before the shard's cursor are in the log already
// (a drain that stopped between its two steps): they only leave the
// queue.
func (s *Store) drainLedger(ctx context.Context, l layout, k int64) ([]repermit.ConsentRecord, error) {
	field := fLedgerQ + strconv.FormatInt(k, 10)
	var out []repermit.ConsentRecord
	for attempt := 0; ; attempt++ {
		if attempt == 100 {
			return out, repermit.Errorf(repermit.EUNAVAILABLE, "drain %s shard %d: too many concurrent updates", l.id, k)
		}
		done, recs, err := s.drainLedgerPage(ctx, l, k, field)
		if err != nil {
			return out, err
		}
		out = append(out, recs...)
		if done {
			return out, nil
		}
	}
}

// drainLedgerPage is one step of drainLedger; done is true when the queue
// is empty.
func (s *Store) drainLedgerPage(ctx context.Context, l layout, k int64, field string) (done bool, recs []repermit.ConsentRecord, err error) {
	// The script checks the head and the cursor: a drain that races an
	// answer in home, or another drain, only tries again.
	var vals *redis.SliceCmd
	var msgs *redis.XMessageSliceCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		vals = p.HMGet(ctx, l.meta(0), fLedgerHead, fLedgerSeq, field)
		msgs = p.XRangeN(ctx, l.ledgerQ(k), "-", "+", drainPage)
		return nil
	})
	if err != nil {
		return false, nil, unavailable("drain "+l.id, err)
	}
	v := vals.Val()
	head, _ := v[0].(string)
	seq, _ := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
	cursor, _ := v[2].(string)
	var stale []string
	var todo []redis.XMessage
	for _, m := range msgs.Val() {
		if cursor != "" && !streamIDLess(cursor, m.ID) {
			stale = append(stale, m.ID)
		} else {
			todo = append(todo, m)
		}
	}
	if len(stale) > 0 {
		if err := s.rdb.XDel(ctx, l.ledgerQ(k), stale...).Err(); err != nil {
			return false, nil, unavailable("drain "+l.id, err)
		}
	}
	if len(todo) == 0 {
		return len(msgs.Val()) == 0, nil, nil
	}
	args := []any{field, cursor, head, "", todo[len(todo)-1].ID}
	recs = make([]repermit.ConsentRecord, len(todo))
	for i, m := range todo {
		raw, _ := m.Values["rec"].(string)
		rec, err := repermit.ParseRecord([]byte(raw))
		if err != nil {
			return false, nil, fmt.Errorf("drain %s shard %d: record %s: %w", l.id, k, m.ID, err)
		}
		seq++
		rec.Seq = seq
		recs[i] = rec
		args = append(args, rec.Canonical())
	}
	next := recs[len(recs)-1].LeafHash().String()
	args[3] = next
	ids, err := appendQueuedScript.Run(ctx, s.rdb, []string{l.meta(0), l.ledgerQ(0)}, args...).StringSlice()
	if err != nil {
		return false, nil, unavailable("drain "+l.id, err)
	}
	if len(ids) == 1 && ids[0] == "moved" {
		s.ledger.forgetHead(l.id)
		return false, nil, nil
	}
	s.ledger.setHead(l.id, ledgerHead{hash: next, seq: seq})
	if err := s.relink(ctx, l, k, todo, recs, ids); err != nil {
		return false, nil, err
	}
	return false, recs, nil
}

// relink runs relinkScript for records drained from shard k.
func (s *Store) relink(ctx context.Context, l layout, k int64, msgs []redis.XMessage, recs []repermit.ConsentRecord, ids []string) error {
	keys := []string{l.ledgerQ(k)}
	at := map[int64]int{} // bucket -> index in keys, from 1
	args := make([]any, 0, 4*len(msgs))
	for i, m := range msgs {
		b, slot := bucketOf(recs[i].Recipient)
		j, ok := at[b]
		if !ok {
			keys = append(keys, l.bucket(b))
			j = len(keys)
			at[b] = j
		}
		args = append(args, j, slot, m.ID, ids[i])
	}
	if err := relinkScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return unavailable("drain "+l.id, err)
	}
	return nil
}

// drainEvents moves the events queued in shard k to the outbox.
func (s *Store) drainEvents(ctx context.Context, l layout, k int64) error {
	field := fEventQ + strconv.FormatInt(k, 10)
	for attempt := 0; attempt < 100; attempt++ {
		var cur *redis.StringCmd
		var msgs *redis.XMessageSliceCmd
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			cur = p.HGet(ctx, l.meta(0), field)
			msgs = p.XRangeN(ctx, l.eventsQ(k), "-", "+", drainPage)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return unavailable("drain events "+l.id, err)
		}
		cursor := cur.Val()
		var stale, moved []string
		args := []any{field, cursor, ""}
		for _, m := range msgs.Val() {
			if cursor != "" && !streamIDLess(cursor, m.ID) {
				stale = append(stale, m.ID)
				continue
			}
			fields := make([]string, 0, 2*len(m.Values))
			for name, v := range m.Values {
				fields = append(fields, name, fmt.Sprint(v))
			}
			js, err := json.Marshal(fields)
			if err != nil {
				return fmt.Errorf("drain events %s: %w", l.id, err)
			}
			args = append(args, js)
			moved = append(moved, m.ID)
		}
		if len(moved) > 0 {
			args[2] = moved[len(moved)-1]
			ok, err := moveEventsScript.Run(ctx, s.rdb, []string{l.meta(0), l.eventsQ(0)}, args...).Int()
			if err != nil {
				return unavailable("drain events "+l.id, err)
			}
			if ok == 0 {
				continue // another drain was first: read again
			}
		}
		if gone := append(stale, moved...); len(gone) > 0 {
			if err := s.rdb.XDel(ctx, l.eventsQ(k), gone...).Err(); err != nil {
				return unavailable("drain events "+l.id, err)
			}
		}
		if len(msgs.Val()) < drainPage {
			return nil
		}
	}
	return repermit.Errorf(repermit.EUNAVAILABLE, "drain events %s shard %d: too many concurrent updates", l.id, k)
}

// queuedSubject returns the subject of a record still in shard k's queue
// (the answer field's "p" id), or "" when it left the queue.
func (s *Store) queuedSubject(ctx context.Context, r *repermit.Recipient) (string, error) {
	l, err := s.layoutOf(ctx, r.Campaign)
	if err != nil {
		return "", err
	}
	b, _ := bucketOf(r.Index)
	return s.recordSubject(ctx, r, l.ledgerQ(l.shardOf(b)), strings.TrimPrefix(r.LedgerID, "p"))
}
