package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// maxBucketsPerTick bounds the store reads of one reminder tick when few
// recipients are due.
const maxBucketsPerTick = 256

func cursorRemind(k int) string { return "remind:" + strconv.Itoa(k) }

// handleRemind runs one tick of reminder k's sweep: it walks the next
// buckets and enqueues mail step k+1 for every recipient who was mailed at
// most k times and has not answered, paced like the feeder.
//
// The sweep walks each bucket once, when its time has come. A recipient
// whose initial mail went out after the sweep passed its bucket (a campaign
// whose feeding outlasts the reminder offset) gets no reminder k; the next
// reminder, which takes anyone mailed at most k times, still reaches them.
func (s *Server) handleRemind(ctx context.Context, t *asynq.Task) error {
	var p tickPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Reminder < 1 {
		return fmt.Errorf("remind: bad payload %q: %w", t.Payload(), asynq.SkipRetry)
	}
	cursor := cursorRemind(p.Reminder)
	c, alive, err := s.chainStart(ctx, p, cursor)
	if err != nil || !alive {
		return err
	}
	imported, err := s.store.Imported(ctx, c.ID)
	if err != nil {
		return err
	}
	buckets := redisstore.Buckets(imported)
	if p.From >= buckets {
		return nil
	}
	now := s.cfg.Now()
	if c.Status == repermit.StatusPaused {
		return s.sched.tick(ctx, p, s.nextTick(now))
	}
	budget, err := s.perTick(ctx, c)
	if err != nil {
		return err
	}
	step := p.Reminder + 1
	batch := s.batchSize(c)
	limit := imported
	if c.Waves != nil {
		if limit, err = s.remindLimit(ctx, c, p.Reminder, imported, now); err != nil {
			return err
		}
	}
	b := p.From
	for queued := 0; b < buckets && b-p.From < maxBucketsPerTick && queued < budget; b++ {
		if b*redisstore.BucketSize >= limit {
			break // a later wave's reminders are not due yet
		}
		rs, err := s.store.Bucket(ctx, c.ID, b)
		if err != nil {
			return err
		}
		var idxs []int64
		flush := func() error {
			if len(idxs) == 0 {
				return nil
			}
			// No TaskID: a repeated tick may pick a different set, and
			// claims make overlapping tasks harmless.
			err := s.sched.send(ctx, sendPayload{Campaign: c.ID, Step: step, Indexes: idxs}, 0, "")
			queued += len(idxs)
			idxs = nil
			return err
		}
		for _, r := range rs {
			if r.Index >= limit || !due(r, step) {
				continue
			}
			idxs = append(idxs, r.Index)
			if len(idxs) == batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if (b+1)*redisstore.BucketSize > limit && limit < imported {
			break // the cursor stays on a bucket a later wave shares
		}
	}
	moved, err := s.store.AdvanceCursor(ctx, c.ID, cursor, p.From, b)
	if err != nil {
		return err
	}
	if !moved || b >= buckets {
		return nil
	}
	p.From = b
	return s.sched.tick(ctx, p, s.nextTick(now))
}
