package worker

import (
	"context"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// sweepLoop offers a sweep task once per SweepInterval. Every worker does,
// under one TaskID per interval, so one of them runs it.
func (s *Server) sweepLoop(ctx context.Context) {
	s.offerEvery(ctx, TypeSweep, "sweep", s.cfg.SweepInterval, time.Minute)
}

// handleSweep repairs what could have gone missing: the scheduled tasks of
// every unfinished campaign (a launch that crashed after its import, a task
// deleted by hand) and chains whose heartbeat went stale (a worker killed
// between a tick's cursor write and its successor's enqueue, or every
// worker down for longer than StaleAfter), and recipients that no queued
// task will mail any more (see reconcile). Scheduled tasks themselves wait
// in Redis while no worker runs, and run when one starts.
func (s *Server) handleSweep(ctx context.Context, _ *asynq.Task) error {
	ids, err := s.store.Campaigns(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c, err := s.store.Campaign(ctx, id)
		if err != nil || c.Status == repermit.StatusFinished {
			continue
		}
		if err := s.repair(ctx, c); err != nil {
			s.log.Warn("sweep", "campaign", id, "err", err)
		}
	}
	return nil
}

func (s *Server) repair(ctx context.Context, c *repermit.Campaign) error {
	if err := s.sched.Schedule(ctx, *c); err != nil {
		return err
	}
	now := s.cfg.Now()
	if !now.Before(c.Deadline) {
		stale, err := s.stale(ctx, c.ID, cursorExpire, c.Deadline, now)
		if err != nil || !stale {
			return err
		}
		s.log.Warn("re-arming the expiry", "campaign", c.ID)
		slot := now.Truncate(s.cfg.StaleAfter).UnixMilli()
		return s.sched.expire(ctx, c.ID, slot, time.Time{}, 0)
	}
	if c.Status == repermit.StatusCancelled {
		return nil
	}
	imported, err := s.store.Imported(ctx, c.ID)
	if err != nil {
		return err
	}
	chains := []struct {
		p     tickPayload
		since time.Time
		end   int64
	}{{p: tickPayload{Campaign: c.ID}, since: c.StartAt, end: imported}}
	for k := range c.Reminders {
		if at := c.ReminderAt(k + 1); at.Before(c.Deadline) {
			chains = append(chains, struct {
				p     tickPayload
				since time.Time
				end   int64
			}{p: tickPayload{Campaign: c.ID, Reminder: k + 1}, since: at, end: redisstore.Buckets(imported)})
		}
	}
	for _, ch := range chains {
		if now.Before(ch.since) {
			continue
		}
		name := cursorFeed
		if ch.p.Reminder > 0 {
			name = cursorRemind(ch.p.Reminder)
		}
		cur, err := s.store.Cursor(ctx, c.ID, name)
		if err != nil {
			return err
		}
		if cur >= ch.end {
			continue
		}
		stale, err := s.stale(ctx, c.ID, name, ch.since, now)
		if err != nil {
			return err
		}
		if !stale {
			continue
		}
		s.log.Warn("re-arming a stalled chain", "campaign", c.ID, "chain", name, "cursor", cur)
		ch.p.From = cur
		if err := s.sched.tick(ctx, ch.p, s.nextTick(now)); err != nil {
			return err
		}
	}
	return s.reconcile(ctx, c)
}

// stale reports whether chain name of campaign id has not ticked for
// StaleAfter, counting from since when it never ticked.
func (s *Server) stale(ctx context.Context, id, name string, since, now time.Time) (bool, error) {
	beat, err := s.store.Beat(ctx, id, name)
	if err != nil {
		return false, err
	}
	if beat.Before(since) {
		beat = since
	}
	return now.Sub(beat) > s.cfg.StaleAfter, nil
}
