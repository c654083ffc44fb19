package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// A recipient's state is stored as a short code in field s<slot> of its
// bucket:
//
//	p            pending
//	q<k>:<ms>    mail step k claimed by a worker whose lease ends at ms;
//	             counts as pending for k=1 and as sent for a reminder
//	s<k>         k mails sent (1 = initial, 2 = initial + first reminder …)
//	c d b u e x  confirmed, declined, bounced, unsubscribed, expired, suppressed
//	n            unreached: the deadline came before the initial mail
//
// The q state is what makes "one mail per step" hold under at-least-once
// delivery: a duplicate task sees the lease and backs off, a retry after a
// crash takes the expired lease over.

// op names a state change; each is one branch of transitionScript.
type op string

const (
	opClaim       op = "claim"   // p|s<k-1> -> q<k> (or an expired q<k> lease) ; campaign must be running
	opSent        op = "sent"    // q<k> -> s<k>
	opRelease     op = "release" // q<k>:<ms> -> q<k>:0 so a retry may claim at once
	opRenew       op = "renew"   // q<k>:<ms>, ms > 0 -> q<k>:<new lease end>: the claimer is alive
	opConfirm     op = "confirm" // p|q|s -> c ; c -> c changes topics ; after the deadline only from c
	opDecline     op = "decline" // p|q|s|c -> d ; after the deadline only from c
	opUnsubscribe op = "unsub"   // p|q|s|c -> u ; after the deadline only from c
	opBounce      op = "bounce"  // q|s -> b
	opSuppress    op = "suppress"
	opExpire      op = "expire" // s|q<k>, k>1 -> e ; p|q1 with a lapsed lease -> n (unreached: never mailed, kept, not suppressed); q1 with a live lease is busy
)

// transitionScript is the one place that changes a recipient's state. It
// checks the current code, writes the new one, keeps the per-state counts in
// the meta hash in step, erases personal data where the new state demands it
// and queues the suppression entry, and (for answers) appends the consent
// record to the ledger, all atomically.
//
// KEYS[1] bucket hash, KEYS[2] campaign meta hash, KEYS[3] suppression
// outbox set, KEYS[4] ledger stream, KEYS[5] timeline hash (changes per
// state and minute, for rates and charts).
// ARGV[1] op, ARGV[2] now (unix ms), ARGV[3] mail step k (claim, sent,
// release, renew), ARGV[4] lease end in unix ms (claim, renew), ARGV[5] answer value
// (topics, comma-separated), ARGV[6] ledger head the record was chained to,
// ARGV[7] record hash, ARGV[8] record JSON, then pairs from ARGV[9]:
// slot, suppression entry ("" for none).
//
// Returns one entry per slot: "ok:<old code>" when applied, "no:<old code>"
// when the state did not allow it, "busy:<old code>" for a held lease; or a
// single "notrunning:<status>" / "ledger:<seq>:<head>" / "gone" for the
// whole call.
var transitionScript = redis.NewScript(`
local op = ARGV[1]
local now = tonumber(ARGV[2])
local step = tonumber(ARGV[3])

local status = redis.call('HGET', KEYS[2], 'status')
if not status or status == 'importing' then return {'gone'} end
if op == 'claim' then
  if status ~= 'running' then return {'notrunning:' .. status} end
  local dl = tonumber(redis.call('HGET', KEYS[2], 'deadline_ms') or '0')
  if dl > 0 and now >= dl then return {'notrunning:deadline'} end
end
local answer = op == 'confirm' or op == 'decline' or op == 'unsub'
-- After the deadline only the confirmed may still answer: change topics,
-- decline or unsubscribe. Withdrawing consent works as long as they exist.
local late = false
if answer then
  local dl = tonumber(redis.call('HGET', KEYS[2], 'deadline_ms') or '0')
  late = dl > 0 and now >= dl
  if ARGV[8] ~= '' then
    local head = redis.call('HGET', KEYS[2], 'lhead') or ''
    if head ~= ARGV[6] then
      return {'ledger:' .. (redis.call('HGET', KEYS[2], 'lseq') or '0') .. ':' .. head}
    end
  end
end

local function public(code)
  local l = string.sub(code, 1, 1)
  if l == 'p' then return 'pending' end
  if l == 'q' then
    if tonumber(string.match(code, '^q(%d+)')) == 1 then return 'pending' end
    return 'sent'
  end
  if l == 's' then return 'sent' end
  if l == 'c' then return 'confirmed' end
  if l == 'd' then return 'declined' end
  if l == 'b' then return 'bounced' end
  if l == 'u' then return 'unsubscribed' end
  if l == 'e' then return 'expired' end
  if l == 'x' then return 'suppressed' end
  if l == 'n' then return 'unreached' end
  return 'unknown'
end

-- advance returns the new code, or nil and the reason it is refused.
local function advance(code)
  local l = string.sub(code, 1, 1)
  local k = tonumber(string.match(code, '^[qs](%d+)') or '0')
  if op == 'claim' then
    if step == 1 and l == 'p' then return 'q1:' .. ARGV[4] end
    if l == 's' and k < step and step > 1 then return 'q' .. step .. ':' .. ARGV[4] end
    if l == 'q' and k == step then
      local lease = tonumber(string.match(code, ':(%d+)$') or '0')
      if lease > now then return nil, 'busy' end
      return 'q' .. step .. ':' .. ARGV[4]
    end
    return nil, 'no'
  elseif op == 'sent' then
    if l == 'q' and k == step then return 's' .. step end
    return nil, 'no'
  elseif op == 'release' then
    if l == 'q' and k == step then return 'q' .. step .. ':0' end
    return nil, 'no'
  elseif op == 'renew' then
    if l == 'q' and k == step and tonumber(string.match(code, ':(%d+)$') or '0') > 0 then
      return 'q' .. step .. ':' .. ARGV[4]
    end
    return nil, 'no'
  elseif late and l ~= 'c' then
    return nil, 'no'
  elseif op == 'confirm' then
    -- c -> c is a change of topics.
    if l == 'p' or l == 'q' or l == 's' or l == 'c' then return 'c' end
  elseif op == 'decline' then
    if l == 'p' or l == 'q' or l == 's' or l == 'c' then return 'd' end
  elseif op == 'unsub' then
    if l == 'p' or l == 'q' or l == 's' or l == 'c' then return 'u' end
  elseif op == 'bounce' then
    if l == 'q' or l == 's' then return 'b' end
  elseif op == 'suppress' then
    if l == 'p' or l == 'q' or l == 's' then return 'x' end
  elseif op == 'expire' then
    -- Only the asked can be silent: whoever never got the initial mail
    -- (claimed but unsent included) is unreached and keeps the address.
    -- A live lease on the initial mail means the SMTP conversation may
    -- still succeed: wait for its MarkSent (then it expires as asked) or
    -- for the lease to run out (then it was not asked and is unreached).
    if l == 'q' and k == 1 and tonumber(string.match(code, ':(%d+)$') or '0') > now then
      return nil, 'busy'
    end
    if l == 'p' or (l == 'q' and k == 1) then return 'n' end
    if l == 'q' or l == 's' then return 'e' end
  end
  return nil, 'no'
end

local erase = op == 'decline' or op == 'unsub' or op == 'bounce' or op == 'suppress' or op == 'expire'
local out = {}
local ledgerID = ''
-- Reads and writes are batched over the call: one HMGET, one HSET, one
-- HDEL, one SADD, and count changes summed and written once per state, so
-- a bucket of 128 expiries costs a handful of commands, not hundreds.
local delta, entered = {}, {}
local slots = {}
for i = 9, #ARGV, 2 do table.insert(slots, 's' .. ARGV[i]) end
local codes = redis.call('HMGET', KEYS[1], unpack(slots))
local sets, dels, adds, seen = {}, {}, {}, {}
for j = 1, #slots do
  local i = 7 + 2 * j
  local slot = ARGV[i]
  local code = codes[j]
  if seen[slot] then code = nil end
  seen[slot] = true
  if not code then
    table.insert(out, 'no:')
  else
    local new, why = advance(code)
    if not new then
      table.insert(out, why .. ':' .. code)
    else
      table.insert(sets, 's' .. slot)
      table.insert(sets, new)
      local from, to = public(code), public(new)
      if from ~= to then
        delta[from] = (delta[from] or 0) - 1
        delta[to] = (delta[to] or 0) + 1
        entered[to] = (entered[to] or 0) + 1
      end
      if erase and new ~= 'n' then
        table.insert(dels, 'd' .. slot)
        table.insert(dels, 'e' .. slot)
        table.insert(dels, 'f' .. slot)
        table.insert(dels, 'g' .. slot)
        if ARGV[i + 1] ~= '' then table.insert(adds, ARGV[i + 1]) end
      end
      if answer then
        -- Per-topic totals of the confirmed: a recipient who leaves the
        -- confirmed state takes its topics along.
        if string.sub(code, 1, 1) == 'c' then
          local prev = redis.call('HGET', KEYS[1], 'a' .. slot) or ''
          local topics = string.match(prev, '^[^|]*|([^|]*)') or ''
          for t in string.gmatch(topics, '[^,]+') do
            redis.call('HINCRBY', KEYS[2], 'topic:' .. t, -1)
          end
        end
        if op == 'confirm' then
          for t in string.gmatch(ARGV[5], '[^,]+') do
            redis.call('HINCRBY', KEYS[2], 'topic:' .. t, 1)
          end
        end
        if ARGV[8] ~= '' then
          ledgerID = redis.call('XADD', KEYS[4], '*', 'rec', ARGV[8])
          redis.call('HSET', KEYS[2], 'lhead', ARGV[7])
          redis.call('HINCRBY', KEYS[2], 'lseq', 1)
        end
        redis.call('HSET', KEYS[1], 'a' .. slot, ARGV[2] .. '|' .. ARGV[5] .. '|' .. ledgerID)
      end
      table.insert(out, 'ok:' .. code)
    end
  end
end
if #sets > 0 then redis.call('HSET', KEYS[1], unpack(sets)) end
if #dels > 0 then redis.call('HDEL', KEYS[1], unpack(dels)) end
if #adds > 0 then redis.call('SADD', KEYS[3], unpack(adds)) end
for state, n in pairs(delta) do
  if n ~= 0 then redis.call('HINCRBY', KEYS[2], 'n:' .. state, n) end
end
local minute = math.floor(now / 60000)
for state, n in pairs(entered) do
  redis.call('HINCRBY', KEYS[5], state .. ':' .. minute, n)
end
return out
`)

// transitionArgs are the optional parts of a state change.
type transitionArgs struct {
	step       int
	leaseUntil time.Time
	answer     string
	ledgerPrev string
	ledgerHash string
	ledgerJSON string
}

// slotChange asks for one recipient of a bucket to change; suppress is the
// suppression entry queued when the change erases the address.
type slotChange struct {
	slot     string
	suppress string
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

func (s *Store) transition(ctx context.Context, id string, bucket int64, o op, now time.Time, a transitionArgs, changes []slotChange) ([]outcome, error) {
	keys := []string{s.bucketKey(id, bucket), s.metaKey(id), s.outboxKey(id), s.ledgerKey(id), s.timelineKey(id)}
	args := make([]any, 0, 8+2*len(changes))
	lease := "0"
	if !a.leaseUntil.IsZero() {
		lease = ms(a.leaseUntil)
	}
	args = append(args, string(o), ms(now), strconv.Itoa(a.step), lease, a.answer, a.ledgerPrev, a.ledgerHash, a.ledgerJSON)
	for _, c := range changes {
		args = append(args, c.slot, c.suppress)
	}
	res, err := transitionScript.Run(ctx, s.rdb, keys, args...).StringSlice()
	if err != nil {
		return nil, unavailable(fmt.Sprintf("%s %s", o, id), err)
	}
	if len(res) == 1 {
		switch r := res[0]; {
		case r == "gone":
			return nil, repermit.Errorf(repermit.EGONE, "campaign %s is past its deadline or gone", id)
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

// publicState maps a stored code to the state users see.
func publicState(code string) (repermit.State, int) {
	if code == "" {
		return "", 0
	}
	step := 0
	if code[0] == 'q' || code[0] == 's' {
		num, _, _ := strings.Cut(code[1:], ":")
		step, _ = strconv.Atoi(num)
	}
	switch code[0] {
	case 'p':
		return repermit.StatePending, 0
	case 'q':
		if step == 1 {
			return repermit.StatePending, 0
		}
		return repermit.StateSent, step - 1
	case 's':
		return repermit.StateSent, step
	case 'c':
		return repermit.StateConfirmed, 0
	case 'd':
		return repermit.StateDeclined, 0
	case 'b':
		return repermit.StateBounced, 0
	case 'u':
		return repermit.StateUnsubscribed, 0
	case 'e':
		return repermit.StateExpired, 0
	case 'x':
		return repermit.StateSuppressed, 0
	case 'n':
		return repermit.StateUnreached, 0
	}
	return "", 0
}
