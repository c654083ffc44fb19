package worker

import (
	"context"
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
	s.offerEvery(ctx, TypeBounces, "bounces", s.cfg.BounceInterval, 5*time.Minute)
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
