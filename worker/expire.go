package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

const cursorExpire = "expire"

// bucketsPerCursorWrite is how many buckets are expired between two
// cursor writes (one window of expireWindow); a crash repeats at most one
// window, which ExpireBucket makes harmless.
const bucketsPerCursorWrite = 256

// handleExpire runs at the deadline: every recipient still sent becomes
// expired, its address erased and its hash put on the suppression list;
// every one still pending (never mailed) becomes unreached and keeps its
// address; then the campaign is finished. It runs for paused and cancelled
// campaigns too, is idempotent, and resumes where a crashed run stopped.
func (s *Server) handleExpire(ctx context.Context, t *asynq.Task) error {
	var p expirePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("expire: bad payload %q: %w", t.Payload(), asynq.SkipRetry)
	}
	c, err := s.store.Campaign(ctx, p.Campaign)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	if c.Status == repermit.StatusFinished {
		return nil
	}
	// asynq schedules to the whole second, so the task may come early.
	if wait := c.Deadline.Sub(s.cfg.Now()); wait > 0 {
		if wait > 5*time.Second {
			return s.sched.expire(ctx, c.ID, c.Deadline.UnixMilli(), c.Deadline, 0)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	n, unreached, err := s.expire(ctx, c)
	if err != nil {
		return err
	}
	if err := s.store.DrainSuppression(ctx, c.ID); err != nil {
		return err
	}
	err = s.store.SetStatus(ctx, c.ID, repermit.StatusFinished,
		repermit.StatusRunning, repermit.StatusPaused, repermit.StatusCancelled)
	if err != nil {
		return err
	}
	s.log.Info("campaign finished", "campaign", c.ID, "expired", n, "unreached", unreached)
	s.checkpointAtDeadline(ctx, c)
	if unreached > 0 {
		s.log.Warn("recipients never got the initial mail before the deadline; they are kept as unreached (repermit export "+c.ID+" --what unreached)",
			"campaign", c.ID, "unreached", unreached)
	}
	return nil
}

// expire walks the buckets from the expire cursor, several at once, and
// returns how many recipients it expired and how many were unreached.
func (s *Server) expire(ctx context.Context, c *repermit.Campaign) (int64, int64, error) {
	imported, err := s.store.Imported(ctx, c.ID)
	if err != nil {
		return 0, 0, err
	}
	buckets := redisstore.Buckets(imported)
	cur, err := s.store.Cursor(ctx, c.ID, cursorExpire)
	if err != nil {
		return 0, 0, err
	}
	var total, unreached atomic.Int64
	for cur < buckets {
		if err := s.store.SetBeat(ctx, c.ID, cursorExpire, s.cfg.Now()); err != nil {
			return total.Load(), unreached.Load(), err
		}
		end := min(cur+bucketsPerCursorWrite, buckets)
		if err := s.expireWindow(ctx, c.ID, cur, end, &total, &unreached); err != nil {
			return total.Load(), unreached.Load(), err
		}
		moved, err := s.store.AdvanceCursor(ctx, c.ID, cursorExpire, cur, end)
		if err != nil {
			return total.Load(), unreached.Load(), err
		}
		if !moved {
			// Another run got ahead; continue from where it stands.
			if end, err = s.store.Cursor(ctx, c.ID, cursorExpire); err != nil {
				return total.Load(), unreached.Load(), err
			}
		}
		cur = end
	}
	return total.Load(), unreached.Load(), nil
}

// expireWindow expires buckets from to to, ExpireConcurrency at a time,
// adding to total and unreached what it expired and kept.
func (s *Server) expireWindow(ctx context.Context, id string, from, to int64, total, unreached *atomic.Int64) error {
	next := make(chan int64)
	errs := make(chan error, s.cfg.ExpireConcurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range s.cfg.ExpireConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range next {
				n, u, err := s.expireBucket(ctx, id, b)
				if err != nil {
					errs <- fmt.Errorf("expire %s bucket %d: %w", id, b, err)
					cancel()
					return
				}
				unreached.Add(int64(u))
				if n > 0 {
					total.Add(int64(n))
					s.cfg.Observer.Expired(id, n)
				}
			}
		}()
	}
feed:
	for b := from; b < to; b++ {
		select {
		case next <- b:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// expireBucket expires one bucket, waiting out the initial mails still in
// flight in it: their claims are renewed only while a sender is alive, so
// the wait ends within a lease of the sender's last sign of life.
func (s *Server) expireBucket(ctx context.Context, id string, b int64) (expired, unreached int, err error) {
	for {
		n, u, err := s.store.ExpireBucket(ctx, id, b, s.cfg.Now())
		expired, unreached = expired+n, unreached+u
		if !errors.Is(err, redisstore.ErrBusy) {
			return expired, unreached, err
		}
		select {
		case <-ctx.Done():
			return expired, unreached, ctx.Err()
		case <-time.After(expireBusyRetry):
		}
	}
}

// expireBusyRetry is how long the expiry waits before it looks again at a
// bucket whose initial mails were in flight.
const expireBusyRetry = 250 * time.Millisecond
