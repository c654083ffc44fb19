package web

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per client key with a bounded table: clients
// idle long enough to have refilled their bucket are forgotten first, since
// forgetting them loses nothing.
type limiter struct {
	rate  rate.Limit
	burst int
	max   int
	idle  time.Duration // time to refill a whole bucket

	mu      sync.Mutex
	clients map[netip.Addr]*client
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perSecond float64, burst, maxClients int) *limiter {
	return &limiter{
		rate:    rate.Limit(perSecond),
		burst:   burst,
		max:     maxClients,
		idle:    time.Duration(float64(burst) / perSecond * float64(time.Second)),
		clients: make(map[netip.Addr]*client),
	}
}

// allow reports whether key may make one more request at now.
func (l *limiter) allow(key netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= l.max {
			l.evict(now)
		}
		c = &client{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[key] = c
	}
	c.seen = now
	return c.lim.AllowN(now, 1)
}

// evict makes room: first the idle clients, then, if a crowd of fresh ones
// fills the table, an arbitrary quarter (map order is random), which lets
// those few start over with a full bucket rather than lock everyone out.
func (l *limiter) evict(now time.Time) {
	for k, c := range l.clients {
		if now.Sub(c.seen) > l.idle {
			delete(l.clients, k)
		}
	}
	for k := range l.clients {
		if len(l.clients) < l.max*3/4 {
			break
		}
		delete(l.clients, k)
	}
}

// exhausted reports whether key has no request left at now, without
// taking one.
func (l *limiter) exhausted(key netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.clients[key]
	return ok && c.lim.TokensAt(now) < 1
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
