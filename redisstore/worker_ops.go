package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// Operations the sending engine (package worker) needs beyond the single-
// recipient ones: batched reads and claims, chain heartbeats, and the keys
// the domain penalties. Layout additions:
//
//	P:{ID}:meta          field beat:<name>  unix ms of a task chain's last tick
//	rate:P:{ID}:rate:<scope>  GCRA state, written by redis_rate, which
//	                     prepends "rate:" (see AllowAtMost)
//	P:penalty:<domain>   string with a TTL: the domain asked us to slow down
//
// Recipient states still change only through transitionScript.

const fBeatPfx = "beat:"

func (s *Store) penaltyKey(domain string) string { return s.prefix + ":penalty:" + domain }

// ReadForSend reads, in one round trip, a campaign's status and the
// recipients at idxs (nil where an index holds no recipient). The answer
// is a snapshot for planning: only ClaimBatch decides whether a mail may go.
func (s *Store) ReadForSend(ctx context.Context, id string, idxs []int64) (repermit.CampaignStatus, []*repermit.Recipient, error) {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return "", nil, err
	}
	pipe := s.rdb.Pipeline()
	status := pipe.HGet(ctx, s.metaKey(id), fStatus)
	cmds := make([]*redis.SliceCmd, len(idxs))
	// One HMGET per recipient of s, d and e, as Recipient reads (see
	// there: a field missing from a bucket costs Redis a scan of all of
	// it, and f and g are nearly always missing); the pipeline makes them
	// one round trip all the same.
	for i, idx := range idxs {
		if idx < 0 {
			continue
		}
		f := &slotFields[idx%BucketSize]
		cmds[i] = pipe.HMGet(ctx, l.bucket(idx/BucketSize), f.sde[:]...)
	}
	_, err = pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", nil, unavailable("read "+id, err)
	}
	st, _ := status.Result()
	if st == "" || st == string(repermit.StatusImporting) {
		return "", nil, repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	}
	rows := make([][]any, len(idxs))
	var long []int
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		rows[i] = cmd.Val()
		if len(rows[i]) < 3 {
			continue
		}
		if e, _ := rows[i][2].(string); len(e) >= maxPacked {
			long = append(long, i)
		}
	}
	if len(long) > 0 {
		// Rows of 128 packed bytes or more, read again whole: one HMGET of
		// all five fields is one snapshot, so an erasure in between cannot
		// tear the row.
		pipe := s.rdb.Pipeline()
		again := make([]*redis.SliceCmd, len(long))
		for j, i := range long {
			f := &slotFields[idxs[i]%BucketSize]
			again[j] = pipe.HMGet(ctx, l.bucket(idxs[i]/BucketSize), f.sdefg[:]...)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return "", nil, unavailable("read "+id, err)
		}
		for j, i := range long {
			rows[i] = again[j].Val()
		}
	}
	out := make([]*repermit.Recipient, len(idxs))
	for i, vals := range rows {
		if len(vals) < 3 {
			continue
		}
		code, _ := vals[0].(string)
		if code == "" {
			continue
		}
		if out[i], err = s.buildRecipient(ctx, id, idxs[i], code, joinValues(vals[1:]), ""); err != nil {
			return "", nil, err
		}
		// Its answer field was not read: no revision an answer could
		// rely on.
		out[i].Revision = ""
	}
	return repermit.CampaignStatus(st), out, nil
}

// ClaimBatch takes mail step k (1 initial, 2 first reminder …) of several
// recipients for this worker until lease ends, one script call per bucket.
// It returns one error per index: nil when claimed, else wrapping
// ErrNotAllowed (that step was mailed already, or the recipient answered)
// or ErrBusy (another worker holds the lease), or ENOTFOUND. The call as a
// whole fails with ErrNotRunning when the campaign is paused, cancelled or
// past its deadline.
//
// The claim is written before the SMTP step: after a crash between the
// SMTP server's acceptance and MarkSent, the lease runs out and a retry
// mails the step again. That is the one window where a recipient can get
// two mails of one step; the lease only guards against concurrent
// duplicates.
func (s *Store) ClaimBatch(ctx context.Context, id string, idxs []int64, step int, now time.Time, lease time.Duration) ([]error, error) {
	return s.batch(ctx, id, idxs, opClaim, now, transitionArgs{step: step, leaseUntil: now.Add(lease)})
}

// batch runs one transition for several recipients, one script call per
// bucket, and returns one verdict per index.
func (s *Store) batch(ctx context.Context, id string, idxs []int64, o op, now time.Time, a transitionArgs) ([]error, error) {
	out := make([]error, len(idxs))
	byBucket := make(map[int64][]int) // bucket -> positions in idxs
	var order []int64
	for i, idx := range idxs {
		b, _ := bucketOf(idx)
		if _, ok := byBucket[b]; !ok {
			order = append(order, b)
		}
		byBucket[b] = append(byBucket[b], i)
	}
	for _, b := range order {
		pos := byBucket[b]
		changes := make([]slotChange, len(pos))
		for j, i := range pos {
			_, slot := bucketOf(idxs[i])
			changes[j] = slotChange{slot: slot}
		}
		res, err := s.transition(ctx, id, b, o, now, a, changes)
		if errors.Is(err, ErrNotRunning) {
			// A shard that missed a resume (its copy failed) would refuse
			// every claim while home runs, and the worker would requeue
			// the mails at once, over and over: it is repaired here.
			if repaired, rerr := s.repairStatus(ctx, id, b); rerr == nil && repaired {
				res, err = s.transition(ctx, id, b, o, now, a, changes)
			}
		}
		if err != nil {
			return nil, err
		}
		for j, i := range pos {
			out[i] = verdict(res[j], id, idxs[i], o)
		}
	}
	return out, nil
}

// MarkSentBatch is MarkSent for several claimed recipients of one step,
// one script call per bucket. It returns one error per index, as ClaimBatch.
func (s *Store) MarkSentBatch(ctx context.Context, id string, idxs []int64, step int, now time.Time) ([]error, error) {
	return s.batch(ctx, id, idxs, opSent, now, transitionArgs{step: step})
}

// RenewBatch extends the leases of claimed recipients of step to now+lease;
// the claimer calls it while it is alive, so that its claims never run out
// under a slow SMTP server, and a killed claimer's run out within one
// lease. A recipient marked sent or released meanwhile is left alone (its
// error wraps ErrNotAllowed).
func (s *Store) RenewBatch(ctx context.Context, id string, idxs []int64, step int, now time.Time, lease time.Duration) ([]error, error) {
	return s.batch(ctx, id, idxs, opRenew, now, transitionArgs{step: step, leaseUntil: now.Add(lease)})
}

// SetBeat records that the task chain name (e.g. "feed", "remind:1",
// "expire") of a campaign ran at now; a sweep re-arms chains whose beat
// grows old.
func (s *Store) SetBeat(ctx context.Context, id, name string, now time.Time) error {
	if err := s.rdb.HSet(ctx, s.metaKey(id), fBeatPfx+name, now.UnixMilli()).Err(); err != nil {
		return unavailable("beat "+id, err)
	}
	return nil
}

// Beat returns when the task chain name last ran, zero if never.
func (s *Store) Beat(ctx context.Context, id, name string) (time.Time, error) {
	v, err := s.rdb.HGet(ctx, s.metaKey(id), fBeatPfx+name).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, unavailable("beat "+id, err)
	}
	return parseMs(v), nil
}

// PenalizeDomain slows every campaign's mail to a recipient domain for d,
// after its servers answered 421 or asked for less. A longer penalty in
// place is kept.
func (s *Store) PenalizeDomain(ctx context.Context, domain string, d time.Duration) error {
	if domain == "" || d <= 0 {
		return nil
	}
	_, err := penalizeScript.Run(ctx, s.rdb, []string{s.penaltyKey(domain)}, d.Milliseconds()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("penalize "+domain, err)
	}
	return nil
}

// penalizeScript: KEYS[1] penalty key; ARGV[1] duration ms. Extends, never
// shortens.
var penalizeScript = redis.NewScript(`
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
`)

// DomainPenalties returns, for each domain, how long its penalty still
// runs (zero for none), in one round trip.
func (s *Store) DomainPenalties(ctx context.Context, domains []string) ([]time.Duration, error) {
	out := make([]time.Duration, len(domains))
	if len(domains) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.DurationCmd, len(domains))
	for i, d := range domains {
		cmds[i] = pipe.PTTL(ctx, s.penaltyKey(d))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable("domain penalties", err)
	}
	for i, c := range cmds {
		// PTTL answers -2 for a missing key and -1 for one without a TTL;
		// go-redis passes those through as durations below zero.
		if v := c.Val(); v > 0 {
			out[i] = v
		}
	}
	return out, nil
}

// Unmailed returns the recipients below index limit, in buckets from to
// to-1, that wait for mail step with no live claim: for the initial mail
// (step 1) the pending ones and those whose claim ran out or was released;
// for a reminder those whose claim of that step ran out or was released
// (whom a reminder sweep passed by is not its to repeat). It also returns
// the first bucket that still holds such a recipient or a live claim of
// step; buckets before it can hold none later, so the next call may start
// there. It only reads: whoever mails them claims first.
func (s *Store) Unmailed(ctx context.Context, id string, from, to, limit int64, step int, now time.Time) ([]int64, int64, error) {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	fields := make([]string, BucketSize)
	for i := range fields {
		fields[i] = "s" + strconv.Itoa(i)
	}
	nowMs := now.UnixMilli()
	var out []int64
	open := to
	const perRound = 64
	for lo := from; lo < to; lo += perRound {
		hi := min(lo+perRound, to)
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, 0, hi-lo)
		for b := lo; b < hi; b++ {
			cmds = append(cmds, pipe.HMGet(ctx, l.bucket(b), fields...))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, 0, unavailable("unmailed "+id, err)
		}
		for j, cmd := range cmds {
			b := lo + int64(j)
			for slot, v := range cmd.Val() {
				idx := b*BucketSize + int64(slot)
				code, _ := v.(string)
				if code == "" || idx >= limit {
					continue
				}
				waiting, live := waitsFor(code, step, nowMs)
				if waiting || live {
					open = min(open, b)
				}
				if waiting {
					out = append(out, idx)
				}
			}
		}
	}
	return out, open, nil
}

// waitsFor reads a state code: whether it waits for mail step with no live
// claim, and whether a live claim of step holds it.
func waitsFor(code string, step int, nowMs int64) (waiting, live bool) {
	if code == "p" {
		return step == 1, false
	}
	if code[0] != 'q' {
		return false, false
	}
	k, lease, _ := strings.Cut(code[1:], ":")
	if n, _ := strconv.Atoi(k); n != step {
		return false, false
	}
	until, _ := strconv.ParseInt(lease, 10, 64)
	if until > nowMs {
		return false, true
	}
	return true, false
}
