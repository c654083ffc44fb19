package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
)

// Task types, as asynqmon shows them.
const (
	TypeFeed   = "repermit:feed"   // one tick of a campaign's feeder
	TypeSend   = "repermit:send"   // mail one step to a few recipients of one bucket
	TypeRemind = "repermit:remind" // one tick of a reminder sweep
	TypeExpire = "repermit:expire" // expire the silent at the deadline
	TypeSweep  = "repermit:sweep"  // re-arm missing tasks and stalled chains
	TypePurge  = "repermit:purge"  // drop per-recipient records when retention ends
)

// tickPayload drives the feed and remind chains.
type tickPayload struct {
	Campaign string `json:"c"`
	// Reminder is the reminder number k (its mail is step k+1); 0 for the
	// feeder.
	Reminder int `json:"r,omitempty"`
	// From is the cursor value this tick expects: a recipient index for
	// the feeder, a bucket for a reminder. A tick finding the cursor
	// elsewhere is stale and ends.
	From int64 `json:"from"`
}

// sendPayload names recipients to mail, all in one bucket.
type sendPayload struct {
	Campaign string  `json:"c"`
	Step     int     `json:"s"` // 1 initial, k+1 reminder k
	Indexes  []int64 `json:"i"`
	// Attempt counts temporary SMTP failures of these recipients so far.
	Attempt int `json:"a,omitempty"`
}

type expirePayload struct {
	Campaign string `json:"c"`
}

// Scheduler enqueues a campaign's tasks. Every task it enqueues has a
// deterministic TaskID, so scheduling twice is harmless.
type Scheduler struct {
	c     enqueuer
	queue string
}

// NewScheduler returns a scheduler that enqueues on queue; worker servers
// must process that queue (Config.Queue).
func NewScheduler(c *asynq.Client, queue string) *Scheduler {
	return &Scheduler{c: c, queue: queue}
}

// Schedule arms a launched campaign: the feeder's first tick at StartAt,
// one reminder sweep per reminder that falls before the deadline, and the
// expiry at the deadline. It may be called again at any time (the worker's
// sweep does): tasks that exist, or ran and are retained, are not doubled.
func (s *Scheduler) Schedule(ctx context.Context, c repermit.Campaign) error {
	now := time.Now()
	// A completed task blocks its TaskID only while asynq retains it, so
	// these are kept until well after the deadline, when a repeated
	// Schedule could otherwise run them again.
	keep := max(c.Deadline.Sub(now), 0) + 24*time.Hour
	err := s.enqueue(ctx, TypeFeed, tickPayload{Campaign: c.ID}, "feed:"+c.ID,
		asynq.ProcessAt(c.StartAt), asynq.Retention(keep), asynq.Timeout(time.Minute))
	if err != nil {
		return err
	}
	for k := range c.Reminders {
		at := c.ReminderAt(k + 1)
		if !at.Before(c.Deadline) {
			continue
		}
		err := s.enqueue(ctx, TypeRemind, tickPayload{Campaign: c.ID, Reminder: k + 1},
			"remind:"+c.ID+":"+strconv.Itoa(k+1),
			asynq.ProcessAt(at), asynq.Retention(keep), asynq.Timeout(time.Minute))
		if err != nil {
			return err
		}
	}
	err = s.expire(ctx, c.ID, 0, c.Deadline, keep)
	if err != nil || c.Retention <= 0 {
		return err
	}
	purgeAt := c.Deadline.Add(c.Retention)
	return s.enqueue(ctx, TypePurge, expirePayload{Campaign: c.ID}, "purge:"+c.ID,
		asynq.ProcessAt(purgeAt), asynq.Retention(max(purgeAt.Sub(now), 0)+24*time.Hour),
		asynq.Timeout(time.Hour), asynq.MaxRetry(100))
}

// enqueue adds a task; a TaskID that exists counts as success. id "" means
// none.
func (s *Scheduler) enqueue(ctx context.Context, typ string, payload any, id string, opts ...asynq.Option) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", typ, err)
	}
	opts = append(opts, asynq.Queue(s.queue))
	if id != "" {
		opts = append(opts, asynq.TaskID(id))
	}
	_, err = s.c.EnqueueContext(ctx, asynq.NewTask(typ, b), opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue %s %s: %w", typ, id, err)
	}
	return nil
}

// expire enqueues the expiry of campaign id at at (zero: now), kept for
// retention after it ran (zero: not kept). Its TaskID is "expire:ID" for
// the one Schedule arms at launch and "expire:ID:N" for a later one: N is
// the deadline in unix ms for a task that came early and waits for it, or
// the sweep's time slot for an expiry it re-arms, so that repeats of one
// collide and distinct ones do not.
func (s *Scheduler) expire(ctx context.Context, id string, n int64, at time.Time, retention time.Duration) error {
	taskID := "expire:" + id
	if n != 0 {
		taskID += ":" + strconv.FormatInt(n, 10)
	}
	opts := []asynq.Option{asynq.Timeout(time.Hour), asynq.MaxRetry(100)}
	if !at.IsZero() {
		opts = append(opts, asynq.ProcessAt(at))
	}
	if retention > 0 {
		opts = append(opts, asynq.Retention(retention))
	}
	return s.enqueue(ctx, TypeExpire, expirePayload{Campaign: id}, taskID, opts...)
}

// tick enqueues the next tick of a chain at at. The id holds the expected
// cursor and the time slot, so that two chains that meet at the same cursor
// and slot merge into one.
func (s *Scheduler) tick(ctx context.Context, p tickPayload, at time.Time) error {
	typ, id := TypeFeed, "feed:"+p.Campaign
	if p.Reminder > 0 {
		typ, id = TypeRemind, "remind:"+p.Campaign+":"+strconv.Itoa(p.Reminder)
	}
	id += ":" + strconv.FormatInt(p.From, 10) + ":" + strconv.FormatInt(at.UnixMilli(), 10)
	return s.enqueue(ctx, typ, p, id, asynq.ProcessAt(at), asynq.Timeout(time.Minute))
}

// send enqueues a send task after delay. id may be "".
func (s *Scheduler) send(ctx context.Context, p sendPayload, delay time.Duration, id string) error {
	return s.enqueue(ctx, TypeSend, p, id, asynq.ProcessIn(delay), asynq.Timeout(30*time.Minute))
}
