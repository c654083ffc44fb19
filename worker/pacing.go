package worker

import (
	"context"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// pace applies, across every worker, the campaign's rate and its
// per-domain rates (GCRA in Redis) and any domain penalty. It returns the
// recipients that may be mailed now and puts the others back in the queue
// for when the limiter allows them, without counting an attempt.
//
// Domains are charged first and the campaign after, so a recipient held
// back by its domain never uses up the campaign's rate; one held back by
// the campaign has used its domain's, which at worst sends a little below
// the domain's limit.
func (s *Server) pace(ctx context.Context, e *campaignEntry, p sendPayload, rs []*repermit.Recipient) ([]*repermit.Recipient, error) {
	if len(rs) == 0 {
		return rs, nil
	}
	c := &e.c
	count := make(map[string]int)
	var domains []string
	for _, r := range rs {
		d := domainOf(r.Email)
		if count[d] == 0 {
			domains = append(domains, d)
		}
		count[d]++
	}
	penalties, err := s.store.DomainPenalties(ctx, domains)
	if err != nil {
		return nil, err
	}
	type verdict struct {
		allowed int           // recipients of the domain that may go now
		wait    time.Duration // when the others may try again
		limit   redisstore.RateLimit
	}
	verdicts := make(map[string]verdict, len(domains))
	for i, d := range domains {
		if penalties[i] > 0 {
			verdicts[d] = verdict{allowed: 0, wait: penalties[i]}
			continue
		}
		n := c.Rate.DomainLimit(d)
		if n <= 0 {
			verdicts[d] = verdict{allowed: count[d]}
			continue
		}
		limit := redisstore.RateLimit{Rate: n, Period: time.Minute, Burst: max(1, min(n/12, s.cfg.BatchSize))}
		res, err := s.store.AllowAtMost(ctx, c.ID, "d:"+d, limit, count[d])
		if err != nil {
			return nil, err
		}
		verdicts[d] = verdict{allowed: res.Allowed, wait: waitFor(res, limit), limit: limit}
	}
	var deferred []held
	byDomain := make(map[string]int) // domain -> position in deferred
	keep := rs[:0:0]
	for _, r := range rs {
		d := domainOf(r.Email)
		v := verdicts[d]
		if v.allowed > 0 {
			v.allowed--
			verdicts[d] = v
			keep = append(keep, r)
			continue
		}
		i, ok := byDomain[d]
		if !ok {
			i = len(deferred)
			byDomain[d] = i
			deferred = append(deferred, held{wait: v.wait, limit: v.limit})
		}
		deferred[i].idxs = append(deferred[i].idxs, r.Index)
	}
	if ps := c.Rate.PerSecond; ps > 0 && len(keep) > 0 {
		limit := redisstore.RateLimit{Rate: ps, Period: time.Second, Burst: s.batchSize(c)}
		res, err := s.store.AllowAtMost(ctx, c.ID, "campaign", limit, len(keep))
		if err != nil {
			return nil, err
		}
		if res.Allowed < len(keep) {
			deferred = append(deferred, held{wait: waitFor(res, limit), limit: limit, idxs: indexes(keep[res.Allowed:])})
			keep = keep[:res.Allowed]
		}
	}
	n := 0
	for _, h := range deferred {
		n += len(h.idxs)
		if err := h.requeue(ctx, s, p); err != nil {
			return nil, err
		}
	}
	if n > 0 {
		s.cfg.Observer.Throttled(c.ID, n)
	}
	return keep, nil
}

// waitFor is how long recipients refused by a limiter wait: until it has
// room again, at least one emission interval (redis_rate reports no
// RetryAfter when it allowed part of a request).
func waitFor(res redisstore.Allowance, limit redisstore.RateLimit) time.Duration {
	step := limit.Period / time.Duration(limit.Rate)
	return max(res.RetryAfter, step)
}

// held are recipients a limiter or a penalty holds back.
type held struct {
	wait  time.Duration
	limit redisstore.RateLimit // zero for a penalty
	idxs  []int64
}

// requeue spreads the held recipients over time in groups of the limit's
// burst, each group when the limiter should have room for it, rather than
// sending them all back at once to be mostly refused again.
func (h held) requeue(ctx context.Context, s *Server, p sendPayload) error {
	if h.limit.Rate <= 0 {
		return s.requeue(ctx, p, h.idxs, h.wait)
	}
	step := h.limit.Period / time.Duration(h.limit.Rate)
	per := max(1, h.limit.Burst)
	for j := 0; j*per < len(h.idxs); j++ {
		group := h.idxs[j*per : min((j+1)*per, len(h.idxs))]
		if err := s.requeue(ctx, p, group, h.wait+time.Duration(j*per)*step); err != nil {
			return err
		}
	}
	return nil
}
