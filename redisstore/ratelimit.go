package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// RateLimit is a GCRA limit: Rate events per Period, at most Burst at once.
type RateLimit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// Allowance is a limiter's answer: how many of the requested events may
// happen now, and when it has room again for the rest (zero when it gave
// everything, and sometimes when it gave part: redis_rate reports no
// RetryAfter then).
type Allowance struct {
	Allowed    int
	RetryAfter time.Duration
}

// AllowAtMost takes up to n events from the limiter of a campaign's scope
// ("campaign", "d:example.com"), shared by every worker on this Redis. Its
// state lives in P:{ID}:rate:<scope> (redis_rate prepends "rate:"), beside
// the campaign on a cluster.
func (s *Store) AllowAtMost(ctx context.Context, id, scope string, l RateLimit, n int) (Allowance, error) {
	s.limiterOnce.Do(func() { s.limiter = redis_rate.NewLimiter(s.rdb) })
	res, err := s.limiter.AllowAtMost(ctx, s.prefix+":{"+id+"}:rate:"+scope,
		redis_rate.Limit{Rate: l.Rate, Period: l.Period, Burst: l.Burst}, n)
	if err != nil {
		return Allowance{}, unavailable(fmt.Sprintf("rate limit %s %s", id, scope), err)
	}
	return Allowance{Allowed: res.Allowed, RetryAfter: max(res.RetryAfter, 0)}, nil
}
