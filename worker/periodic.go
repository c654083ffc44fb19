package worker

import (
	"context"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// offerEvery enqueues a task of type typ once per interval until ctx ends.
// Every worker offers it under one TaskID per interval ("name:<slot>"), so
// one of them runs it; the task is not retried, the next interval offers a
// new one.
func (s *Server) offerEvery(ctx context.Context, typ, name string, interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		slot := s.cfg.Now().Truncate(interval).UnixMilli()
		err := s.sched.enqueue(ctx, typ, struct{}{}, name+":"+strconv.FormatInt(slot, 10),
			asynq.Retention(2*interval), asynq.MaxRetry(0), asynq.Timeout(timeout))
		if err != nil && ctx.Err() == nil {
			s.log.Warn("offer periodic task", "task", typ, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
