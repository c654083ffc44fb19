package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// reconcile re-feeds whom the queue lost. A recipient behind a chain's
// cursor (fed, or passed by a reminder sweep) that still waits for its mail
// step with no live claim, and that no send task in the queue names, was
// dropped: a send task deleted by hand, a queue lost with its Redis keys, a
// killed worker's orphaned task. "Everyone is asked" thus rests on the
// recipient states, not on the queue surviving. Re-feeding is harmless
// even when the check races a task: claims decide who is mailed.
//
// Which buckets a pass reads is scanUnmailed's to say.
func (s *Server) reconcile(ctx context.Context, c *repermit.Campaign) error {
	now := s.cfg.Now()
	if c.Status != repermit.StatusRunning || !now.Before(c.Deadline) {
		return nil
	}
	type chain struct {
		step  int
		limit int64 // recipients below this index are behind the cursor
	}
	fed, err := s.store.Cursor(ctx, c.ID, cursorFeed)
	if err != nil {
		return err
	}
	chains := []chain{{step: 1, limit: fed}}
	for k := range c.Reminders {
		if now.Before(c.ReminderAt(k + 1)) {
			continue
		}
		swept, err := s.store.Cursor(ctx, c.ID, cursorRemind(k+1))
		if err != nil {
			return err
		}
		chains = append(chains, chain{step: k + 2, limit: swept * redisstore.BucketSize})
	}
	var queued map[int64]bool
	for _, ch := range chains {
		if ch.limit == 0 {
			continue
		}
		waiting, err := s.scanUnmailed(ctx, c.ID, ch.step, ch.limit, now)
		if err != nil {
			return err
		}
		if len(waiting) == 0 {
			continue
		}
		if queued == nil {
			if queued, err = s.queuedSends(c.ID); err != nil {
				return err
			}
		}
		lost := slices.DeleteFunc(waiting, func(i int64) bool { return queued[sendKey(ch.step, i)] })
		if len(lost) == 0 {
			continue
		}
		if lost, err = s.stillUnmailed(ctx, c.ID, ch.step, ch.limit, lost); err != nil {
			return err
		}
		if len(lost) == 0 {
			continue
		}
		s.log.Warn("re-feeding recipients no queued task names", "campaign", c.ID, "step", ch.step, "recipients", len(lost))
		batch := s.batchSize(c)
		for len(lost) > 0 {
			// One bucket per task, as the feeder does.
			n := 1
			for n < len(lost) && n < batch && lost[n]/redisstore.BucketSize == lost[0]/redisstore.BucketSize {
				n++
			}
			if err := s.sched.send(ctx, sendPayload{Campaign: c.ID, Step: ch.step, Indexes: lost[:n]}, 0, ""); err != nil {
				return err
			}
			lost = lost[n:]
		}
	}
	return nil
}

// scanUnmailed returns the recipients below limit that wait for step with
// no live claim, reading at most two windows of s.reconcileWindow buckets:
// the newest buckets behind the cursor, where a crash or a lost queue
// leaves its recipients (the feeder keeps only a bounded backlog queued),
// and a rolling window over the older ones, so that a lost recipient
// anywhere is found within a few passes however long the list.
//
// Two cursors keep the place: "reconcile:<step>", the first bucket that
// still held a waiting or claimed recipient (the buckets before it are done
// for that step and never read again), and "reconcile-at:<step>", where
// the rolling window goes on.
func (s *Server) scanUnmailed(ctx context.Context, id string, step int, limit int64, now time.Time) ([]int64, error) {
	done, at := "reconcile:"+strconv.Itoa(step), "reconcile-at:"+strconv.Itoa(step)
	open, err := s.store.Cursor(ctx, id, done)
	if err != nil {
		return nil, err
	}
	pos, err := s.store.Cursor(ctx, id, at)
	if err != nil {
		return nil, err
	}
	end := redisstore.Buckets(limit)
	tail := max(open, end-s.reconcileWindow)
	from := max(pos, open)
	if from >= tail {
		from = open // wrap around
	}
	var out []int64
	if from < tail {
		to := min(from+s.reconcileWindow, tail)
		waiting, first, err := s.store.Unmailed(ctx, id, from, to, limit, step, now)
		if err != nil {
			return nil, err
		}
		out = waiting
		if from == open && first > open {
			if _, err := s.store.AdvanceCursor(ctx, id, done, open, first); err != nil {
				return nil, err
			}
		}
		if _, err := s.store.AdvanceCursor(ctx, id, at, pos, to); err != nil {
			return nil, err
		}
	}
	waiting, first, err := s.store.Unmailed(ctx, id, tail, end, limit, step, now)
	if err != nil {
		return nil, err
	}
	if tail == open && first > open {
		if _, err := s.store.AdvanceCursor(ctx, id, done, open, first); err != nil {
			return nil, err
		}
	}
	return append(out, waiting...), nil
}

// stillUnmailed keeps of lost those that still wait for step. The scan read
// their states before the queue was listed: a send task that ended in
// between had mailed (or claimed) them and was no longer listed, and they
// were reported lost and fed again, harmlessly (claims decide) but with a
// warning about a lost queue: the likely cause of a warning of 8
// recipients, one task's batch, in a run of 100,000 mails at 4,500 a
// second that sent no mail twice.
func (s *Server) stillUnmailed(ctx context.Context, id string, step int, limit int64, lost []int64) ([]int64, error) {
	now := s.cfg.Now()
	var out []int64
	for len(lost) > 0 {
		b := lost[0] / redisstore.BucketSize
		n := 1
		for n < len(lost) && lost[n]/redisstore.BucketSize == b {
			n++
		}
		waiting, _, err := s.store.Unmailed(ctx, id, b, b+1, limit, step, now)
		if err != nil {
			return nil, err
		}
		for _, i := range lost[:n] {
			if slices.Contains(waiting, i) {
				out = append(out, i)
			}
		}
		lost = lost[n:]
	}
	return out, nil
}

// sendKey names one recipient's mail step in the set queuedSends builds.
func sendKey(step int, idx int64) int64 { return idx<<8 | int64(step&0xff) }

// queuedSends returns the recipients and steps that a send task of
// campaign id names, in any state asynq keeps a task that will still run:
// pending, scheduled, retry, and active unless its worker is gone.
func (s *Server) queuedSends(id string) (map[int64]bool, error) {
	out := make(map[int64]bool)
	add := func(ts []*asynq.TaskInfo) {
		for _, t := range ts {
			if t.Type != TypeSend || t.IsOrphaned {
				continue
			}
			var p sendPayload
			if json.Unmarshal(t.Payload, &p) != nil || p.Campaign != id {
				continue
			}
			for _, i := range p.Indexes {
				out[sendKey(p.Step, i)] = true
			}
		}
	}
	// Listed in the order tasks move (scheduled or retry, then pending,
	// then active), so that a task moving on while they are listed is
	// found in its next place.
	lists := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		s.inspect.ListScheduledTasks, s.inspect.ListRetryTasks, s.inspect.ListPendingTasks, s.inspect.ListActiveTasks,
	}
	const pageSize = 1000
	for _, list := range lists {
		for page := 1; ; page++ {
			ts, err := list(s.cfg.Queue, asynq.PageSize(pageSize), asynq.Page(page))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("list queued tasks: %w", err)
			}
			add(ts)
			if len(ts) < pageSize {
				break
			}
		}
	}
	return out, nil
}
