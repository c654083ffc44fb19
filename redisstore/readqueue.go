package redisstore

import (
	"context"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Every page a recipient opens reads its recipient: one HMGET of a few
// fields. Sent one by one, each read costs a write and a read system call
// here and in Redis, about as much CPU as the HTTP request it serves. The
// reads that arrive while one is in flight queue up, and the oldest of
// them sends them all in one pipeline: under load the calls are shared,
// and a lone read goes out at once as before. Each HMGET is still its own
// atomic read; only the round trip is shared.

// maxReadBatch bounds the reads one pipeline carries.
const maxReadBatch = 128

// readQueue holds the recipient reads waiting to be sent.
type readQueue struct {
	mu sync.Mutex
	// leading is true while a read is being sent; the next batch is then
	// sent by the oldest waiting read once it is done.
	leading bool
	waiting []*readJob
}

// readJob is one HMGET of a recipient's fields.
type readJob struct {
	args []any // "hmget", the key, the fields
	// done receives the reply, or lead: the job is the oldest waiting and
	// is to send the next batch itself. Buffered: the sender never waits.
	done chan readDone
}

type readDone struct {
	lead bool
	vals []any
	err  error
}

// hmget reads fields (strings) of key, sharing the round trip with the
// reads in flight beside it.
func (s *Store) hmget(ctx context.Context, key string, fields []any) ([]any, error) {
	q := &s.reads
	args := make([]any, 2+len(fields))
	args[0], args[1] = "hmget", key
	copy(args[2:], fields)
	j := &readJob{args: args, done: make(chan readDone, 1)}
	q.mu.Lock()
	lead := !q.leading
	q.leading = true
	q.waiting = append(q.waiting, j)
	q.mu.Unlock()
	if !lead {
		select {
		case d := <-j.done:
			if !d.lead {
				return d.vals, d.err
			}
		case <-ctx.Done():
			if !q.abandon(j) {
				return nil, ctx.Err()
			}
			// The lead was handed over already: it must be taken, or
			// the reads behind would wait for good.
		}
	}
	return q.send(ctx, s.rdb, j)
}

// abandon takes j out of the queue when its request ends; it reports
// whether j must lead all the same, having been handed the lead.
func (q *readQueue) abandon(j *readJob) (lead bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case d := <-j.done:
		return d.lead
	default:
	}
	q.waiting = slices.DeleteFunc(q.waiting, func(x *readJob) bool { return x == j })
	return false
}

// send sends the oldest waiting reads, me among them, in one pipeline,
// hands every other job its reply and returns me's; then it hands the
// lead to the oldest read still waiting.
func (q *readQueue) send(ctx context.Context, rdb redis.UniversalClient, me *readJob) ([]any, error) {
	q.mu.Lock()
	n := min(len(q.waiting), maxReadBatch)
	batch := slices.Clone(q.waiting[:n])
	q.waiting = slices.Delete(q.waiting, 0, n)
	q.mu.Unlock()

	// The batch holds other requests' reads: this request ending must not
	// fail theirs. The Redis client's timeouts bound the round trip.
	bctx := context.WithoutCancel(ctx)
	var mine readDone
	if len(batch) == 1 {
		cmd := redis.NewSliceCmd(bctx, me.args...)
		_ = rdb.Process(bctx, cmd) // the error is the command's
		mine.vals, mine.err = cmd.Result()
	} else {
		cmds := make([]*redis.SliceCmd, len(batch))
		pipe := rdb.Pipeline()
		for i, j := range batch {
			cmds[i] = redis.NewSliceCmd(bctx, j.args...)
			_ = pipe.Process(bctx, cmds[i]) // queues it
		}
		// Each read's own error is read below.
		_, _ = pipe.Exec(bctx)
		for i, j := range batch {
			vals, err := cmds[i].Result()
			if j == me {
				mine = readDone{vals: vals, err: err}
				continue
			}
			j.done <- readDone{vals: vals, err: err}
		}
	}

	q.mu.Lock()
	if len(q.waiting) == 0 {
		q.leading = false
	} else {
		q.waiting[0].done <- readDone{lead: true}
	}
	q.mu.Unlock()
	if err := ctx.Err(); err != nil && mine.err == nil {
		// Report the request's own end, as a direct read would have.
		return nil, err
	}
	return mine.vals, mine.err
}
