package web

import (
	"context"
	"sync"
	"time"

	"github.com/repermit/repermit"
)

// campaignCache keeps campaigns by sequence number for a few seconds, which
// saves two Redis round trips on every page. A status change (pause,
// cancel, finish) shows after at most the TTL; the deadline needs no cache
// refresh because it never changes and is checked against the clock on
// every request, and Record enforces it again inside Redis.
type campaignCache struct {
	store Store
	ttl   time.Duration
	now   func() time.Time // wall clock for the TTL, not Config.Now

	mu sync.Mutex
	m  map[uint32]cachedCampaign
}

type cachedCampaign struct {
	c     *repermit.Campaign
	until time.Time
}

// maxCampaigns bounds the cache; only authentic tokens reach it, so its
// keys are real campaigns and the bound is never close in practice.
const maxCampaigns = 4096

func newCampaignCache(s Store, ttl time.Duration) *campaignCache {
	return &campaignCache{store: s, ttl: ttl, now: time.Now, m: make(map[uint32]cachedCampaign)}
}

// get returns the campaign; callers must not modify it.
func (cc *campaignCache) get(ctx context.Context, seq uint32) (*repermit.Campaign, error) {
	if cc.ttl > 0 {
		cc.mu.Lock()
		e, ok := cc.m[seq]
		cc.mu.Unlock()
		if ok && cc.now().Before(e.until) {
			return e.c, nil
		}
	}
	c, err := cc.store.CampaignBySeq(ctx, seq)
	if err != nil {
		return nil, err
	}
	if cc.ttl > 0 {
		cc.mu.Lock()
		if len(cc.m) >= maxCampaigns {
			clear(cc.m)
		}
		cc.m[seq] = cachedCampaign{c: c, until: cc.now().Add(cc.ttl)}
		cc.mu.Unlock()
	}
	return c, nil
}
