package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/repermit/repermit"
)

// Answers of one campaign chain their consent records onto one ledger
// head, so they cannot be written side by side. They used to take turns,
// one script call each: a campaign's answers were bound to one round trip
// to Redis apiece, however many requests waited (about 1,300 a second on
// the 2-core machine, with the web process and Redis mostly idle).
//
// Now they are written by group commit. The answers that arrive while a
// write is in flight queue up; the request at the head of the queue then
// leads: it chains all of them (up to maxAnswerBatch) onto the head, one
// record after the other, and sends their transition script calls in one
// pipeline. Each call is still the one atomic script per state change,
// and each checks that the head is the record before its own, so the
// chain stays whole whatever happens between them. Every request still
// returns only after the reply to its own call: an answer is durable in
// Redis before its page is shown. A request waits for at most the write
// in flight and its own.

// maxAnswerBatch bounds the answers one pipelined round trip carries.
const maxAnswerBatch = 64

// answerPatience bounds how long one answer is tried again on a head that
// moved. A bound in time, not in tries: on a campaign over several shards
// every drain of another shard's records moves the head too, and under a
// burst of answers from several processes 50 quick tries were once all
// lost (CI, Redis Cluster, -race). Each round writes somebody's records,
// so the log progresses; the jitter below keeps one answer from losing
// every round.
const answerPatience = 30 * time.Second

// maxAnswerJitter caps the random wait between tries of a contended answer.
const maxAnswerJitter = 20 * time.Millisecond

// ledgerQueues holds each campaign's queue of answers and caches each
// campaign's last known head. The script checks the head, so a stale
// entry costs one retry, never a broken chain.
type ledgerQueues struct {
	mu sync.Mutex
	// queues has an entry while the campaign has a leader; a campaign
	// without answers in flight keeps none.
	queues map[string]*answerQueue
	heads  map[string]ledgerHead
}

type ledgerHead struct {
	hash   string
	seq    int64
	legacy bool // the campaign writes the hash chain of before the consent log
}

type answerQueue struct {
	waiting []*answerJob // not taken into a batch yet, oldest first
}

// answerJob is one answer on its way to the ledger.
type answerJob struct {
	ctx                 context.Context
	a                   Answer
	o                   op
	b                   int64
	slot, entry, topics string
	before              []string
	attempts            int
	first               time.Time // when the answer was first refused
	// taken is true while the job is in a batch being written; guarded
	// by ledgerQueues.mu.
	taken bool
	// done receives the job's result, or lead: the job is at the head of
	// its queue and is to write the next batch itself. Buffered: the
	// sender never waits.
	done chan answerDone
}

type answerDone struct {
	lead    bool
	rec     *repermit.ConsentRecord
	applied bool
	err     error
}

func (k *ledgerQueues) head(id string) (ledgerHead, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.heads[id]
	return h, ok
}

func (k *ledgerQueues) setHead(id string, h ledgerHead) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.heads == nil {
		k.heads = make(map[string]ledgerHead)
	}
	k.heads[id] = h
}

func (k *ledgerQueues) forgetHead(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.heads, id)
}

// enqueue queues j; lead is true when its campaign had no leader, which
// j then is.
func (k *ledgerQueues) enqueue(j *answerJob) (lead bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.queues == nil {
		k.queues = make(map[string]*answerQueue)
	}
	q := k.queues[j.a.Campaign]
	if q == nil {
		q = &answerQueue{}
		k.queues[j.a.Campaign] = q
		lead = true
	}
	q.waiting = append(q.waiting, j)
	return lead
}

// wait waits for j's result or for the lead. A request that ends while j
// still waits takes j out of the queue; once j is being written, its
// result is awaited whatever the request's deadline, so that the caller
// never reports a failure for an answer that was recorded.
func (k *ledgerQueues) wait(ctx context.Context, j *answerJob) answerDone {
	select {
	case d := <-j.done:
		return d
	case <-ctx.Done():
	}
	k.mu.Lock()
	select {
	case d := <-j.done: // sent before the lock was ours
		k.mu.Unlock()
		return d
	default:
	}
	if !j.taken {
		q := k.queues[j.a.Campaign]
		q.waiting = slices.DeleteFunc(q.waiting, func(x *answerJob) bool { return x == j })
		k.mu.Unlock()
		return answerDone{err: unavailable("answer "+j.a.Campaign, ctx.Err())}
	}
	k.mu.Unlock()
	return <-j.done
}

// takeBatch takes the oldest waiting answers of campaign id, up to
// maxAnswerBatch.
func (k *ledgerQueues) takeBatch(id string) []*answerJob {
	k.mu.Lock()
	defer k.mu.Unlock()
	q := k.queues[id]
	n := min(len(q.waiting), maxAnswerBatch)
	batch := slices.Clone(q.waiting[:n])
	q.waiting = slices.Delete(q.waiting, 0, n)
	for _, j := range batch {
		j.taken = true
	}
	return batch
}

// requeue puts answers to be tried again at the head of the queue, in
// their order.
func (k *ledgerQueues) requeue(id string, jobs []*answerJob) {
	if len(jobs) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, j := range jobs {
		j.taken = false
	}
	q := k.queues[id]
	q.waiting = slices.Insert(q.waiting, 0, jobs...)
}

// handOff ends the calling leader's lead: the oldest waiting answer leads
// next, or the campaign's queue goes when none waits.
func (k *ledgerQueues) handOff(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	q := k.queues[id]
	if len(q.waiting) == 0 {
		delete(k.queues, id)
		return
	}
	q.waiting[0].done <- answerDone{lead: true}
}

// appendAnswer runs the answer's transition with its consent record
// chained onto the ledger head, in a batch with the campaign's other
// answers in flight in this process. Another web process may have moved
// the head: then the script refuses and hands back the new head, and the
// answer is tried again on it after a short random wait, until ctx ends.
func (s *Store) appendAnswer(ctx context.Context, a Answer, o op, b int64, slot, entry, topics string, before []string) (*repermit.ConsentRecord, bool, error) {
	l, err := s.layoutOf(ctx, a.Campaign)
	if err != nil {
		return nil, false, err
	}
	if k := l.shardOf(b); k != 0 {
		// A shard other than home queues its record (shardqueue.go).
		return s.queueAnswer(ctx, l, k, a, o, b, slot, entry, topics, before)
	}
	j := &answerJob{ctx: ctx, a: a, o: o, b: b, slot: slot, entry: entry, topics: topics, before: before, done: make(chan answerDone, 1)}
	if !s.ledger.enqueue(j) {
		if d := s.ledger.wait(ctx, j); !d.lead {
			return d.rec, d.applied, d.err
		}
	}
	d := s.leadAnswers(ctx, j)
	return d.rec, d.applied, d.err
}

// batchResult is what writing one answer of a batch gave.
type batchResult struct {
	answerDone
	// retry: the answer was not written and is to be tried again;
	// contended: because another process moved the head.
	retry, contended bool
}

// leadAnswers writes batches of campaign id's queue until me has its
// result, delivering each answer's result to its request, then hands the
// lead on.
func (s *Store) leadAnswers(ctx context.Context, me *answerJob) answerDone {
	id := me.a.Campaign
	// The batch holds other requests' answers too: this request ending
	// must not cut their writes short. The Redis client's timeouts bound
	// each round trip.
	bctx := context.WithoutCancel(ctx)
	for {
		batch := s.ledger.takeBatch(id)
		res := s.writeAnswers(bctx, id, batch)
		var mine *answerDone
		var retry []*answerJob
		contended := 0
		for i, j := range batch {
			r := res[i]
			if r.retry {
				j.attempts++
				if j.first.IsZero() {
					j.first = time.Now()
				}
				switch {
				case time.Since(j.first) > answerPatience:
					r.err = repermit.Errorf(repermit.EUNAVAILABLE, "too many concurrent answers on %s, try again", id)
				case j.ctx.Err() != nil:
					r.err = unavailable("answer "+id, j.ctx.Err())
				default:
					retry = append(retry, j)
					if r.contended {
						contended = j.attempts
					}
					continue
				}
			}
			if j == me {
				mine = &r.answerDone
				continue
			}
			j.done <- r.answerDone
		}
		s.ledger.requeue(id, retry)
		if mine != nil {
			s.ledger.handOff(id)
			return *mine
		}
		if contended > 0 {
			// Jitter spreads processes that keep colliding.
			sleep(bctx, time.Duration(rand.Int64N(min(int64(contended)*int64(time.Millisecond), int64(maxAnswerJitter))+1)))
		}
	}
}

// writeAnswers chains the batch's records onto the head and sends their
// transition calls in one pipeline. An answer whose request has ended
// before it was sent is not written.
func (s *Store) writeAnswers(ctx context.Context, id string, batch []*answerJob) []batchResult {
	out := make([]batchResult, len(batch))
	h, ok := s.ledger.head(id)
	if !ok {
		vals, err := s.rdb.HMGet(ctx, s.metaKey(id), fLedgerHead, fLedgerSeq, fLedgerKind).Result()
		if err != nil {
			for i := range out {
				out[i].err = unavailable("answer "+id, err)
			}
			return out
		}
		h.hash, _ = vals[0].(string)
		h.seq, _ = strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
		h.legacy = vals[2] != ledgerKindLog
	}
	type sent struct {
		i    int
		rec  repermit.ConsentRecord
		next ledgerHead
		cmd  *redis.Cmd
	}
	var calls []sent
	pipe := s.rdb.Pipeline()
	for i, j := range batch {
		if err := j.ctx.Err(); err != nil {
			out[i].err = unavailable("answer "+id, err)
			continue
		}
		rec, next, js, err := s.consentRecord(ctx, j, h)
		if err != nil {
			out[i].err = err
			continue
		}
		// Every answer here is of a bucket in home (appendAnswer sends the
		// others to queueAnswer), whose keys are named alike whatever
		// the number of shards.
		keys, args := s.transitionCall(s.home(id), j.b, j.o, j.a.At, transitionArgs{
			answer: j.topics, ledgerPrev: h.hash, ledgerHash: next.hash, ledgerJSON: js, revision: revisionOf(j.a),
		}, []slotChange{{slot: j.slot, suppress: j.entry}})
		calls = append(calls, sent{i: i, rec: rec, next: next, cmd: s.transitionScript.EvalSha(ctx, pipe, keys, args...)})
		h = next
	}
	if len(calls) == 0 {
		return out
	}
	// Each call's own error is read below.
	_, _ = pipe.Exec(ctx)
	loaded := false
	for n, c := range calls {
		res, err := c.cmd.StringSlice()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis lost its scripts (a restart, SCRIPT FLUSH): load
			// the script and write the answer again. Calls behind it
			// were refused by the same Redis, or find the head moved.
			if !loaded {
				if err = s.transitionScript.Load(ctx, s.rdb).Err(); err == nil {
					loaded = true
				}
			}
			if loaded {
				out[c.i].retry = true
				continue
			}
		}
		o, err := transitionOutcome(batch[c.i].o, id, res, err)
		var moved *errLedgerMoved
		switch {
		case errors.As(err, &moved):
			// Behind an answer that was refused, the head is still the
			// one before it; first in the batch, another process moved it.
			s.ledger.setHead(id, ledgerHead{hash: moved.head, seq: moved.seq, legacy: c.next.legacy})
			out[c.i].retry, out[c.i].contended = true, n == 0
		case errors.Is(err, errRecipientChanged):
			// Refused before any write: the head stands, and the calls
			// behind it find it moved.
			out[c.i].err = err
		case err != nil:
			s.ledger.forgetHead(id)
			out[c.i].err = err
		case o[0].applied:
			s.ledger.setHead(id, c.next)
			rec := c.rec
			out[c.i].rec, out[c.i].applied = &rec, true
		}
	}
	return out
}

// consentRecord makes j's record chained onto h: the record, the head
// after it and the record as the ledger stores it.
func (s *Store) consentRecord(ctx context.Context, j *answerJob, h ledgerHead) (repermit.ConsentRecord, ledgerHead, []byte, error) {
	a := j.a
	if a.Wording != nil {
		if err := s.keepWording(ctx, a.Campaign, a.WordingSHA256, a.Wording); err != nil {
			return repermit.ConsentRecord{}, ledgerHead{}, nil, err
		}
	}
	at := a.At.UTC().Truncate(time.Millisecond)
	if h.legacy {
		// A campaign launched before the consent log goes on with the hash
		// chain it began with, so that its export stays one kind.
		old := repermit.LegacyConsentRecord{
			Seq: h.seq + 1, Campaign: a.Campaign, Recipient: a.Index, Answer: a.State,
			Topics: a.Topics, TopicsBefore: j.before, At: at, IP: a.IP, UserAgent: a.UserAgent,
			WordingSHA256: a.WordingSHA256, Prev: h.hash,
		}
		old.Hash = old.ComputeHash()
		js, err := json.Marshal(old)
		if err != nil {
			return repermit.ConsentRecord{}, ledgerHead{}, nil, fmt.Errorf("answer %s: %w", a.Campaign, err)
		}
		rec := repermit.ConsentRecord{Seq: old.Seq, Campaign: old.Campaign, Recipient: old.Recipient, Answer: old.Answer,
			TopicsBefore: old.TopicsBefore, Topics: old.Topics, At: old.At, IP: old.IP, UserAgent: old.UserAgent, Wording: old.WordingSHA256}
		return rec, ledgerHead{hash: old.Hash, seq: old.Seq, legacy: true}, js, nil
	}
	subject, err := s.subjectOf(ctx, a)
	if err != nil {
		return repermit.ConsentRecord{}, ledgerHead{}, nil, err
	}
	rec := repermit.ConsentRecord{
		Seq: h.seq + 1, Campaign: a.Campaign, Recipient: a.Index, Subject: subject, Answer: a.State,
		TopicsBefore: j.before, Topics: a.Topics, At: at, IP: a.IP, UserAgent: a.UserAgent,
		Wording: a.WordingSHA256,
	}
	// The head the script compares is the last leaf's hash: it names the
	// record and its position, as the chain's hash did. The leaf hash is
	// of the very bytes stored (what LeafHash computes), encoded once:
	// encoding the record twice cost 3 % of the confirm bench's CPU.
	js := rec.Canonical()
	return rec, ledgerHead{hash: tlog.RecordHash(js).String(), seq: rec.Seq}, js, nil
}
