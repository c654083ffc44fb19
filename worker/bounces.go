package worker

import (
	"context"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// TypeBounces polls the bounce mailbox.
const TypeBounces = "repermit:bounces"

// bounceLoop offers a bounce mailbox poll once per BounceInterval. Every
// worker does, under one TaskID per interval, so one of them polls: two
// polls at once would only read the same reports twice (which changes
// nothing), but there is no point in it.
func (s *Server) bounceLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.BounceInterval)
	defer t.Stop()
	for {
		slot := s.cfg.Now().Truncate(s.cfg.BounceInterval).UnixMilli()
		err := s.sched.enqueue(ctx, TypeBounces, struct{}{}, "bounces:"+strconv.FormatInt(slot, 10),
			asynq.Retention(2*s.cfg.BounceInterval), asynq.MaxRetry(0), asynq.Timeout(5*time.Minute))
		if err != nil && ctx.Err() == nil {
			s.log.Warn("offer bounce mailbox poll", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// handleBounces reads the bounce mailbox once: DSNs and ARF complaints
// that name a recipient by a signed token are applied and filed away,
// everything else stays untouched (bounces.Mailbox.Poll).
func (s *Server) handleBounces(ctx context.Context, _ *asynq.Task) error {
	if s.mailbox == nil {
		return nil
	}
	res, err := s.mailbox.Poll(ctx)
	if res.Read > 0 {
		s.log.Info("bounce mailbox polled", "read", res.Read, "processed", res.Processed, "changed", res.Changed, "left", res.Left)
	}
	if err != nil {
		s.log.Warn("bounce mailbox", "err", err)
	}
	// The next interval's poll retries; asynq need not.
	return nil
}
