package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// cursorFeed names the feeder's cursor: the index of the next recipient
// to enqueue.
const cursorFeed = "feed"

// handleFeed runs one tick of a campaign's feeder: it enqueues the next
// batch of initial mails, advances the cursor past them and schedules the
// next tick. It ends the chain when every recipient was fed, when the
// campaign is cancelled or finished, or at the deadline. While the campaign
// is paused it keeps ticking without feeding, so that a resume on any
// worker is picked up within a TickInterval.
func (s *Server) handleFeed(ctx context.Context, t *asynq.Task) error {
	var p tickPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("feed: %v: %w", err, asynq.SkipRetry)
	}
	c, alive, err := s.chainStart(ctx, p, cursorFeed)
	if err != nil || !alive {
		return err
	}
	imported, err := s.store.Imported(ctx, c.ID)
	if err != nil {
		return err
	}
	if p.From >= imported {
		return nil // everyone fed
	}
	now := s.cfg.Now()
	if c.Status == repermit.StatusPaused {
		return s.sched.tick(ctx, p, s.nextTick(now))
	}
	n, err := s.perTick(ctx, c)
	if err != nil {
		return err
	}
	limit := imported
	if c.Waves != nil {
		var stopped bool
		limit, stopped, err = s.waveLimit(ctx, c, p.From, imported, now)
		if err != nil {
			return err
		}
		if stopped || limit <= p.From {
			return s.sched.tick(ctx, p, s.nextTick(now))
		}
	}
	to := min(p.From+int64(n), limit)
	// Send tasks go first, the cursor after: a crash in between repeats
	// the enqueues (their TaskIDs name the exact range, and claims make a
	// second task for the same recipients harmless) instead of skipping
	// recipients for good.
	batch := s.batchSize(c)
	for lo := p.From; lo < to; {
		// Batches never straddle a bucket, so one claim script serves each.
		hi := min(lo+int64(batch), to, (lo/redisstore.BucketSize+1)*redisstore.BucketSize)
		idxs := make([]int64, 0, hi-lo)
		for i := lo; i < hi; i++ {
			idxs = append(idxs, i)
		}
		id := "send:" + c.ID + ":1:" + strconv.FormatInt(lo, 10) + "-" + strconv.FormatInt(hi-1, 10)
		if err := s.sched.send(ctx, sendPayload{Campaign: c.ID, Step: 1, Indexes: idxs}, 0, id); err != nil {
			return err
		}
		lo = hi
	}
	moved, err := s.store.AdvanceCursor(ctx, c.ID, cursorFeed, p.From, to)
	if err != nil {
		return err
	}
	if moved && c.Waves != nil {
		if err := s.markWaveQueued(ctx, c, to, imported, now); err != nil {
			return err
		}
	}
	if !moved || to >= imported {
		return nil
	}
	p.From = to
	return s.sched.tick(ctx, p, s.nextTick(now))
}

// chainStart does what every tick of a feed or reminder chain does first:
// it reads the campaign, ends the chain when the campaign no longer sends or
// the tick is stale, and records the chain's heartbeat.
func (s *Server) chainStart(ctx context.Context, p tickPayload, cursor string) (*repermit.Campaign, bool, error) {
	c, err := s.store.Campaign(ctx, p.Campaign)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	now := s.cfg.Now()
	if c.Status != repermit.StatusRunning && c.Status != repermit.StatusPaused || !now.Before(c.Deadline) {
		return nil, false, nil
	}
	cur, err := s.store.Cursor(ctx, c.ID, cursor)
	if err != nil {
		return nil, false, err
	}
	if cur != p.From {
		return nil, false, nil // another tick moved on; this chain ends
	}
	if err := s.store.SetBeat(ctx, c.ID, cursor, now); err != nil {
		return nil, false, err
	}
	return c, true, nil
}

// nextTick returns the start of the next tick slot. Aligning ticks to
// slots lets two chains at the same cursor collide on their TaskID.
func (s *Server) nextTick(now time.Time) time.Time {
	return now.Truncate(s.cfg.TickInterval).Add(s.cfg.TickInterval)
}

// perTick is how many recipients one tick may enqueue. A rate-limited
// campaign gets one tick's worth of its rate (the limiter in the send
// handler does the fine pacing); one without a rate keeps the queue filled
// to UnlimitedBacklog. Both hold back while the queue is far ahead of the
// workers, so that a pause or cancel has little queued work to turn away
// and Redis does not fill up with tasks.
func (s *Server) perTick(ctx context.Context, c *repermit.Campaign) (int, error) {
	queued := 0
	info, err := s.store.QueueDepth(s.cfg.Queue)
	if err == nil {
		queued = info.Pending * s.cfg.BatchSize
	} // else: Redis is away; count nothing as queued
	backlog := s.cfg.UnlimitedBacklog
	if ps := c.Rate.PerSecond; ps > 0 {
		n := max(1, int(float64(ps)*s.cfg.TickInterval.Seconds()+0.5))
		// Other campaigns may keep the queue at UnlimitedBacklog; a
		// limited one must still get its share.
		room := 2*backlog + 4*n - queued
		return max(0, min(n, room)), nil
	}
	return max(0, backlog-queued), nil
}

// batchSize is how many recipients a send task of c carries: BatchSize, or
// about a quarter second of a lower rate, so that the rate limiter is not
// handed batches it must mostly send back.
func (s *Server) batchSize(c *repermit.Campaign) int {
	if ps := c.Rate.PerSecond; ps > 0 {
		return max(1, min(s.cfg.BatchSize, ps/4))
	}
	return s.cfg.BatchSize
}
