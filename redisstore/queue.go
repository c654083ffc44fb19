package redisstore

import (
	"slices"

	"github.com/hibiken/asynq"
)

// asynq keeps its queues in the same Redis as the store. These constructors
// hand it the store's connection, so that nothing outside this package
// holds a Redis client; asynq objects built here share it and closing them
// leaves it open (it is the store's, see Close).

// Enqueuer returns an asynq client that enqueues through the store's
// connection.
func (s *Store) Enqueuer() *asynq.Client { return asynq.NewClientFromRedisClient(s.rdb) }

// QueueServer returns an asynq server that processes tasks through the
// store's connection.
func (s *Store) QueueServer(cfg asynq.Config) *asynq.Server {
	return asynq.NewServerFromRedisClient(s.rdb, cfg)
}

// QueueDepth is the number of tasks of an asynq queue in each state.
type QueueDepth struct {
	Pending, Active, Scheduled, Retry, Archived, Completed int
}

// QueueDepth reads the sizes of an asynq queue. A queue nothing was ever
// enqueued on is empty: asynq does not know it yet and answers "not
// found", which a scrape right after the start used to report as no
// series at all. go-redis' read timeout bounds the call: asynq's
// inspector takes no context.
func (s *Store) QueueDepth(queue string) (QueueDepth, error) {
	info, err := s.QueueInspector().GetQueueInfo(queue)
	if err != nil {
		// asynq's not-found error is internal; its list of queues tells.
		known, lerr := s.QueueInspector().Queues()
		if lerr == nil && !slices.Contains(known, queue) {
			return QueueDepth{}, nil
		}
		return QueueDepth{}, unavailable("queue "+queue, err)
	}
	return QueueDepth{
		Pending: info.Pending, Active: info.Active, Scheduled: info.Scheduled,
		Retry: info.Retry, Archived: info.Archived, Completed: info.Completed,
	}, nil
}

// QueueInspector returns an asynq inspector on the store's connection,
// built once: it holds no connection of its own.
func (s *Store) QueueInspector() *asynq.Inspector {
	s.inspectOnce.Do(func() { s.inspect = asynq.NewInspectorFromRedisClient(s.rdb) })
	return s.inspect
}
