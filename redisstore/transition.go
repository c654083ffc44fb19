package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// A recipient's state is stored as a short code in field s<slot> of its
// bucket; repermit.Stage describes the codes and repermit's transition
// table the changes between them.

// op names a state change: an event of repermit's transition table.
type op = repermit.Event

const (
	opClaim       = repermit.EventClaim
	opSent        = repermit.EventSent
	opRelease     = repermit.EventRelease
	opRenew       = repermit.EventRenew
	opConfirm     = repermit.EventConfirm
	opDecline     = repermit.EventDecline
	opUnsubscribe = repermit.EventUnsubscribe
	opBounce      = repermit.EventBounce
	opSuppress    = repermit.EventSuppress
	opExpire      = repermit.EventExpire
)

// transitionScript is the one place that changes a recipient's state. It
// checks the current code, writes the new one, keeps the per-state counts in
// the meta hash in step, erases personal data where the new state demands it
// and queues the suppression entry, and (for answers) appends the consent
// record to the ledger, all atomically.
//
// A bounce and an expiry also append their webhook event to the
// campaign's outbox (events.go) in the same call, so that the state
// change and the event that tells the CRM about it exist together or
// not at all.
//
// KEYS[1] bucket hash, KEYS[2] campaign meta hash, KEYS[3] suppression
// outbox set, KEYS[4] ledger stream, KEYS[5] timeline hash (changes per
// state and minute, for rates and charts), KEYS[6] webhook event outbox;
// all of the bucket's shard (shard.go): in a shard other than home, the
// shard's meta, and its queues in place of the ledger and the outbox.
// ARGV[1] op, ARGV[2] now (unix ms), ARGV[3] mail step k (claim, sent,
// release, renew), ARGV[4] lease end in unix ms (claim, renew), ARGV[5] answer value
// (topics, comma-separated; for a bounce, where it was reported), ARGV[6] ledger head the record was chained to,
// ARGV[7] record hash, ARGV[8] record JSON, ARGV[9] index of the bucket's
// first recipient, ARGV[10] the revision an answer was made from (see
// revision; "" for none), then triples from ARGV[11]: slot, suppression entry
// ("" for none), subject (the keyed address hash for the webhook event of
// a bounce or an expiry; "" otherwise).
//
// Returns one entry per slot: "ok:<old code>" when applied, "no:<old code>"
// when the state did not allow it, "busy:<old code>" for a held lease; or a
// single "notrunning:<status>" / "ledger:<seq>:<head>" / "gone" for the
// whole call, or "changed" for an answer whose recipient is no longer at
// the revision its record was made from.
//
// Its state checks are generated from repermit's tables (see
// statetable.go); New builds the script.
func newTransitionScript(stages []repermit.Stage, transitions []repermit.Transition) *redis.Script {
	return redis.NewScript(luaNames() + stateTableLua(stages, transitions) + advanceLua + emitLua + transitionLua)
}

const transitionLua = `
local op = ARGV[1]
local now = tonumber(ARGV[2])
local step = tonumber(ARGV[3])

-- One read of the meta fields any call may need: a redis.call costs about
-- as much as the command it runs.
local meta = redis.call('HMGET', KEYS[2], F_STATUS, F_SHARD_OF, F_DEADLINE, F_LEDGER_HEAD, F_LEDGER_SEQ)
local status = meta[1]
if not status or status == STATUS_IMPORTING then return {'gone'} end
-- A shard other than home (shard.go) queues its records and events in
-- KEYS[4] and KEYS[6]; drainShard takes them to the log and the outbox.
local queued = meta[2] and true or false
evQueued = queued
local dl = tonumber(meta[3] or '0')
if op == EVENT_CLAIM then
  if status ~= STATUS_RUNNING then return {'notrunning:' .. status} end
  if dl > 0 and now >= dl then return {'notrunning:deadline'} end
end
local answer = isAnswer(op)
-- After the deadline only the confirmed may still answer (the table's
-- until_deadline rows).
local late = false
if answer then
  late = dl > 0 and now >= dl
  if ARGV[8] ~= '' and not queued then
    local head = meta[4] or ''
    if head ~= ARGV[6] then
      return {'ledger:' .. (meta[5] or '0') .. ':' .. head}
    end
  end
end

local out, nout = {}, 0
local ledgerID = ''
-- Reads and writes are batched over the call: one HMGET (or HGETALL), one HSET, one
-- HDEL, one SADD, and count changes summed and written once per state, so
-- a bucket of 128 expiries costs a handful of commands, not hundreds.
local delta, entered = {}, {}
local slots, nslots = {}, 0
for i = 11, #ARGV, 3 do
  nslots = nslots + 1
  slots[nslots] = 's' .. ARGV[i]
end
-- A call for most of a bucket (an expiry, a full batch of claims or
-- marks) reads the whole bucket once: HMGET finds each field by a scan of
-- the bucket's listpack, so 128 of them cost about six times one HGETALL
-- (INFO commandstats during an expiry of 1M: 295 us against 52 us a
-- bucket); turning the HGETALL into a Lua table costs more than a few
-- scans, hence only from half a bucket up. An answer writes the bucket
-- inside the loop, so it never keeps the snapshot. The snapshot then
-- takes every change of the call, so that a rewrite below needs no second
-- pass over it.
local codes, byField
if nslots >= 64 and not answer then
  byField = {}
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do byField[all[i]] = all[i + 1] end
  codes = {}
  for j = 1, nslots do codes[j] = byField[slots[j]] or false end
else
  codes = redis.call('HMGET', KEYS[1], unpack(slots))
end
-- An answer's record names the topics before it and the address's
-- subject as the caller read them; written only if they still hold.
if answer and ARGV[10] ~= '' then
  local a = redis.call('HGET', KEYS[1], 'a' .. ARGV[11]) or ''
  if (codes[1] or '') .. '|' .. a ~= ARGV[10] then return {'changed'} end
end
-- A bucket's recipients mostly share a few codes, and what a code
-- becomes depends on nothing else in a call: each is worked out once.
local memo = {}
local sets, nsets, dels, ndels, adds, nadds, seen = {}, 0, {}, 0, {}, 0, {}
for j = 1, nslots do
  local i = 8 + 3 * j
  local slot = ARGV[i]
  local code = codes[j]
  if seen[slot] then code = nil end
  seen[slot] = true
  if not code then
    nout = nout + 1
    out[nout] = 'no:'
  else
    local m = memo[code]
    if not m then
      local from, k, was = stage(code)
      local new, why = advance(op, code, from, k, step, now, ARGV[4], late)
      m = {new = new, was = was, n = 0}
      if new then
        local _, _, is, erases = stage(new)
        m.is, m.erases, m.out = is, erases, 'ok:' .. code
      else
        m.out = why .. ':' .. code
      end
      memo[code] = m
    end
    local new, was, is = m.new, m.was, m.is
    nout = nout + 1
    out[nout] = m.out
    if new then
      m.n = m.n + 1
      local sf = slots[j]
      sets[nsets + 1] = sf
      sets[nsets + 2] = new
      nsets = nsets + 2
      if byField then byField[sf] = new end
      if m.erases then
        local d, e, f, g = 'd' .. slot, 'e' .. slot, 'f' .. slot, 'g' .. slot
        dels[ndels + 1] = d
        dels[ndels + 2] = e
        dels[ndels + 3] = f
        dels[ndels + 4] = g
        ndels = ndels + 4
        if byField then
          byField[d] = nil
          byField[e] = nil
          byField[f] = nil
          byField[g] = nil
        end
        if ARGV[i + 1] ~= '' then
          nadds = nadds + 1
          adds[nadds] = ARGV[i + 1]
        end
      end
      -- The webhook events of a bounce and of an expiry (not of an
      -- unreached recipient: never mailed, nothing to tell).
      if op == EVENT_BOUNCE and is == STATE_BOUNCED then
        emit(KEYS[2], KEYS[6], {'t', 'bounced', 'r', tonumber(ARGV[9]) + tonumber(slot), 'at', ARGV[2], 's', ARGV[i + 2], 'src', ARGV[5]})
      elseif op == EVENT_EXPIRE and is == STATE_EXPIRED and eventsOn(KEYS[2]) then
        emit(KEYS[2], KEYS[6], {'t', 'expired', 'r', tonumber(ARGV[9]) + tonumber(slot), 'at', ARGV[2], 's', ARGV[i + 2]})
      end
      if answer then
        -- Per-topic totals of the confirmed: a recipient who leaves the
        -- confirmed state takes its topics along.
        if was == STATE_CONFIRMED then
          local prev = redis.call('HGET', KEYS[1], 'a' .. slot) or ''
          local topics = string.match(prev, '^[^|]*|([^|]*)') or ''
          for t in string.gmatch(topics, '[^,]+') do
            redis.call('HINCRBY', KEYS[2], F_TOPIC .. t, -1)
          end
        end
        if op == EVENT_CONFIRM then
          for t in string.gmatch(ARGV[5], '[^,]+') do
            redis.call('HINCRBY', KEYS[2], F_TOPIC .. t, 1)
          end
        end
        if ARGV[8] ~= '' and queued then
          -- 'p' marks an id in the shard's queue; drainShard rewrites it
          -- to the record's id in the log.
          ledgerID = 'p' .. redis.call('XADD', KEYS[4], '*', 'rec', ARGV[8])
        elseif ARGV[8] ~= '' then
          ledgerID = redis.call('XADD', KEYS[4], '*', 'rec', ARGV[8])
          -- The head and the count of records, in one write; the count
          -- was read above and only this call changes it now.
          meta[5] = string.format('%d', tonumber(meta[5] or '0') + 1)
          redis.call('HSET', KEYS[2], F_LEDGER_HEAD, ARGV[7], F_LEDGER_SEQ, meta[5])
        end
        -- Written with the new code below, in the same HSET.
        sets[nsets + 1] = 'a' .. slot
        sets[nsets + 2] = ARGV[2] .. '|' .. ARGV[5] .. '|' .. ledgerID
        nsets = nsets + 2
      end
    end
  end
end
-- The counts per state change once for each code that changed.
for _, m in pairs(memo) do
  if m.n > 0 and m.was ~= m.is then
    delta[m.was] = (delta[m.was] or 0) - m.n
    delta[m.is] = (delta[m.is] or 0) + m.n
    entered[m.is] = (entered[m.is] or 0) + m.n
  end
end
local rewrite = ndels > 64
if nsets > 0 and not (rewrite and byField) then redis.call('HSET', KEYS[1], unpack(sets)) end
if rewrite then
  -- Many recipients erased at once (the expiry: up to 512 fields of a
  -- bucket). HDEL finds and cuts each field out of the bucket's listpack
  -- in turn, a scan and a move of the rest every time; writing the hash
  -- anew without them is one pass, and took about half the time measured
  -- on a full bucket. Buckets carry no TTL that a DEL would lose. The
  -- snapshot read above holds the new codes and lacks the erased fields
  -- already.
  local keep, nkeep = {}, 0
  if byField then
    for f, v in pairs(byField) do
      keep[nkeep + 1] = f
      keep[nkeep + 2] = v
      nkeep = nkeep + 2
    end
  else
    local gone = {}
    for _, f in ipairs(dels) do gone[f] = true end
    local all = redis.call('HGETALL', KEYS[1])
    for i = 1, #all, 2 do
      if not gone[all[i]] then
        keep[nkeep + 1] = all[i]
        keep[nkeep + 2] = all[i + 1]
        nkeep = nkeep + 2
      end
    end
  end
  redis.call('DEL', KEYS[1])
  if nkeep > 0 then redis.call('HSET', KEYS[1], unpack(keep)) end
elseif ndels > 0 then
  redis.call('HDEL', KEYS[1], unpack(dels))
end
if nadds > 0 then redis.call('SADD', KEYS[3], unpack(adds)) end
for state, n in pairs(delta) do
  if n ~= 0 then redis.call('HINCRBY', KEYS[2], F_COUNT .. state, n) end
end
local minute = math.floor(now / 60000)
for state, n in pairs(entered) do
  redis.call('HINCRBY', KEYS[5], state .. ':' .. minute, n)
end
return out
`

// transitionArgs are the optional parts of a state change.
type transitionArgs struct {
	step       int
	leaseUntil time.Time
	answer     string
	ledgerPrev string
	ledgerHash string
	ledgerJSON []byte
	// revision of the recipient the answer was made from ("" for none).
	revision string
}

// slotChange asks for one recipient of a bucket to change; suppress is the
// suppression entry queued when the change erases the address, subject
// the keyed address hash its webhook event carries (bounce, expiry).
type slotChange struct {
	slot     string
	suppress string
	subject  string
}

// outcome is the script's answer for one slot.
type outcome struct {
	applied bool
	busy    bool
	old     string // the state code before the call
}

// errLedgerMoved: another answer was appended since the head was read;
// it carries the current head so the retry needs no read of its own.
type errLedgerMoved struct {
	seq  int64
	head string
}

func (e *errLedgerMoved) Error() string { return "ledger head moved" }

// errRecipientChanged: the recipient changed since the read an answer was
// made from; Record reads it again and makes the answer anew.
var errRecipientChanged = errors.New("recipient changed since it was read")

func (s *Store) transition(ctx context.Context, id string, bucket int64, o op, now time.Time, a transitionArgs, changes []slotChange) ([]outcome, error) {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return nil, err
	}
	keys, args := s.transitionCall(l, bucket, o, now, a, changes)
	res, err := s.transitionScript.Run(ctx, s.rdb, keys, args...).StringSlice()
	return transitionOutcome(o, id, res, err)
}

// transitionCall builds the KEYS and ARGV of one transition script call
// on bucket of the campaign of layout l: all keys of the bucket's shard.
func (s *Store) transitionCall(l layout, bucket int64, o op, now time.Time, a transitionArgs, changes []slotChange) ([]string, []any) {
	k := l.shardOf(bucket)
	keys := []string{l.bucket(bucket), l.meta(k), l.supp(k), l.ledgerQ(k), l.timeline(k), l.eventsQ(k)}
	args := make([]any, 0, 9+3*len(changes))
	lease := "0"
	if !a.leaseUntil.IsZero() {
		lease = ms(a.leaseUntil)
	}
	args = append(args, string(o), ms(now), strconv.Itoa(a.step), lease, a.answer, a.ledgerPrev, a.ledgerHash, a.ledgerJSON,
		strconv.FormatInt(bucket*BucketSize, 10), a.revision)
	for _, c := range changes {
		args = append(args, c.slot, c.suppress, c.subject)
	}
	return keys, args
}

// transitionOutcome reads the script's answer (res, or the call's error).
func transitionOutcome(o op, id string, res []string, err error) ([]outcome, error) {
	if err != nil {
		return nil, unavailable(fmt.Sprintf("%s %s", o, id), err)
	}
	if len(res) == 1 {
		switch r := res[0]; {
		case r == "gone":
			return nil, repermit.Errorf(repermit.EGONE, "campaign %s is past its deadline or gone", id)
		case r == "changed":
			return nil, errRecipientChanged
		case strings.HasPrefix(r, "notrunning:"):
			return nil, fmt.Errorf("%s %s: %w (%s)", o, id, ErrNotRunning, strings.TrimPrefix(r, "notrunning:"))
		case strings.HasPrefix(r, "ledger:"):
			seq, head, _ := strings.Cut(strings.TrimPrefix(r, "ledger:"), ":")
			n, _ := strconv.ParseInt(seq, 10, 64)
			return nil, &errLedgerMoved{seq: n, head: head}
		}
	}
	out := make([]outcome, len(res))
	for i, r := range res {
		verdict, old, _ := strings.Cut(r, ":")
		// The old code itself contains a colon for q states.
		if verdict != "ok" && verdict != "no" && verdict != "busy" {
			return nil, fmt.Errorf("%s %s: unexpected script answer %q", o, id, r)
		}
		out[i] = outcome{applied: verdict == "ok", busy: verdict == "busy", old: old}
	}
	return out, nil
}

// publicState maps a stored code to the state users see and the number of
// mails sent.
func publicState(code string) (repermit.State, int) { return repermit.StateOf(code) }
