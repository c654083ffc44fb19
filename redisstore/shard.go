package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// A campaign is split over N hash-slot shards so that one campaign can be
// larger than one Redis Cluster node. Bucket b lives in shard b mod N.
//
//	shard 0 (home)   P:{ID}:…      today's keys, unchanged: the meta hash with
//	                               the config, the status, the cursors and
//	                               the webhook positions; the consent log
//	                               (ledger, tree, checkpoints), the wordings,
//	                               the webhook outbox, the feedback keys
//	shard k, 0<k<N   P:{ID:k}:meta     status and deadline copied from home,
//	                                   counts per state and topic of its buckets
//	                 P:{ID:k}:b:N      its buckets
//	                 P:{ID:k}:supp     its suppression outbox
//	                 P:{ID:k}:timeline its changes per state and minute
//	                 P:{ID:k}:lq       stream: consent records waiting for the log
//	                 P:{ID:k}:eq       stream: webhook events waiting for the outbox
//
// A campaign of one shard (N=1: every campaign launched before shards, and
// the default on a single node) has exactly the keys it always had; the
// meta hash names N only when it is above 1.
//
// Every script stays within one shard. The transition of a recipient in
// shard k changes its bucket, the shard's counts and queues its consent
// record (and its webhook event) in that shard's own stream, atomically;
// drainShard then appends the queued records to the one consent log in
// home with the same optimistic head check an answer in home uses, and
// moves the events to the outbox. A record is thus in the shard's queue
// or in the log, never lost and never in both as far as readers see: the
// append script moves a per-shard cursor with the records, so a drain
// that runs twice appends nothing twice. The log, its checkpoints and
// proofs keep the format of one shard: a record's place in the log is
// where the drain put it.
//
// Status: the home meta's status is the truth every reader goes by; each
// shard's meta holds a copy that its claims check. A change is made in
// home first (the script there decides), then copied to every shard
// before the call returns. A shard reading the old status for that moment
// is harmless: a claim that slips in just after a pause is one that could
// as well have come just before it, and a claim refused just after a
// resume goes back to the queue at once (worker sendBatch.stop reads home).
// A copy that failed is repaired by repeating the change, which copies the
// status again even when home already has it. Until then, a shard left
// running while home is paused claims only for send tasks that read home
// as running before the pause (each send task reads home's status
// first, ReadForSend); a shard left paused while home runs is repaired by
// the first claim it refuses (repairStatus), so that the worker does not
// requeue its mails over and over.

// Meta fields of shards.
const (
	fShards  = "shards" // home: N, when above 1
	fShardOf = "shard"  // shard k>0's meta: k; marks the shard's transitions as queued
	fLedgerQ = "lq:"    // home: lq:<k> stream id of shard k's last record appended to the log
	fEventQ  = "eq:"    // home: eq:<k> stream id of shard k's last event moved to the outbox
)

// MaxShards bounds N: a campaign's readers (status, export) visit every
// shard.
const MaxShards = 256

// shardRows is how many recipients the default puts in one shard on a
// cluster: 62 shards for 1M. A shard's slot is a hash of its tag, so the
// shards fall on the masters at random: 62 of them put 21 ± 4 on each of
// three masters, where 16 would put 5 ± 2 (and leave one master without
// any with a chance of 3·(2/3)^16 ≈ 0.5 %). A shard costs a meta hash and
// a few small keys, and each reader of the campaign's totals one command
// per shard, pipelined.
const shardRows = 16384

// ShardsFor is the number of shards a campaign of rows recipients gets
// when its file names none: 1 on a single node, where shards would only
// add keys, and one per 16,384 recipients on a Redis Cluster, at most
// MaxShards.
func (s *Store) ShardsFor(rows int) int {
	if _, ok := s.rdb.(*redis.ClusterClient); !ok {
		return 1
	}
	return min(MaxShards, max(1, (rows+shardRows-1)/shardRows))
}

// layout names the keys of one campaign of n shards.
type layout struct {
	prefix, id string
	n          int64
}

// tag is the hash tag of shard k: "{ID}" for home, "{ID:k}" else. A
// campaign id has no ':', so no shard's tag is another campaign's.
func (l layout) tag(k int64) string {
	if k == 0 {
		return "{" + l.id + "}"
	}
	return "{" + l.id + ":" + strconv.FormatInt(k, 10) + "}"
}

func (l layout) key(k int64, name string) string { return l.prefix + ":" + l.tag(k) + ":" + name }

func (l layout) shardOf(b int64) int64 { return b % l.n }

func (l layout) bucket(b int64) string {
	return l.key(l.shardOf(b), "b:"+strconv.FormatInt(b, 10))
}

// meta is shard k's meta hash; home's is the campaign's.
func (l layout) meta(k int64) string     { return l.key(k, "meta") }
func (l layout) supp(k int64) string     { return l.key(k, "supp") }
func (l layout) timeline(k int64) string { return l.key(k, "timeline") }

// ledgerQ and eventsQ are where shard k's transitions put records and
// events; home's are the log and the outbox themselves.
func (l layout) ledgerQ(k int64) string {
	if k == 0 {
		return l.key(0, "ledger")
	}
	return l.key(k, "lq")
}

func (l layout) eventsQ(k int64) string {
	if k == 0 {
		return l.key(0, "events")
	}
	return l.key(k, "eq")
}

// shardKeys are the keys of shard k>0 besides its buckets.
func (l layout) shardKeys(k int64) []string {
	return []string{l.meta(k), l.supp(k), l.timeline(k), l.ledgerQ(k), l.eventsQ(k)}
}

// supLog is the key of a campaign's suppression log part named by three
// hex digits, spread over the shards by those digits.
func (l layout) supLog(digits string) string {
	return l.key(l.supLogShard(digits), "suplog:"+digits)
}

// supLogOfBucket is the key of the suppression log part that holds what
// the campaign suppressed of bucket b's recipients, in b's shard.
func (l layout) supLogOfBucket(b int64) string {
	return l.key(l.shardOf(b), "suplog:b"+strconv.FormatInt(b, 10))
}

func (l layout) supLogShard(digits string) int64 {
	v, _ := strconv.ParseInt(digits, 16, 64)
	return v % l.n
}

// shardCache remembers each launched campaign's number of shards, which
// never changes after launch.
type shardCache struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *shardCache) get(id string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.n[id]
	return n, ok
}

func (c *shardCache) set(id string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int64)
	}
	c.n[id] = n
}

func (c *shardCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.n, id)
}

// layoutOf returns campaign id's layout. A campaign that does not exist
// (or is still importing, and may yet be cleared and launched anew) reads
// as one shard and is not remembered.
func (s *Store) layoutOf(ctx context.Context, id string) (layout, error) {
	l := layout{prefix: s.prefix, id: id, n: 1}
	if n, ok := s.shards.get(id); ok {
		l.n = n
		return l, nil
	}
	vals, err := s.rdb.HMGet(ctx, l.meta(0), fShards, fStatus).Result()
	if err != nil {
		return l, unavailable("campaign "+id, err)
	}
	if v, ok := vals[0].(string); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 1 {
			l.n = n
		}
	}
	if st, ok := vals[1].(string); ok && st != string(repermit.StatusImporting) {
		s.shards.set(id, l.n)
	}
	return l, nil
}

// copyStatus writes home's status to every other shard of l (see the
// ordering above). A campaign of one shard has nothing to copy.
func (s *Store) copyStatus(ctx context.Context, l layout) error {
	if l.n == 1 {
		return nil
	}
	st, err := s.rdb.HGet(ctx, l.meta(0), fStatus).Result()
	if err != nil {
		return unavailable("status "+l.id, err)
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k := int64(1); k < l.n; k++ {
			p.HSet(ctx, l.meta(k), fStatus, st)
		}
		return nil
	})
	if err != nil {
		return unavailable("status "+l.id, fmt.Errorf("copy to the shards: %w", err))
	}
	return nil
}

// repairStatus copies home's status to the shards again if bucket b's
// shard holds another one, and reports whether it did.
func (s *Store) repairStatus(ctx context.Context, id string, b int64) (bool, error) {
	l, err := s.layoutOf(ctx, id)
	if err != nil || l.n == 1 {
		return false, err
	}
	k := l.shardOf(b)
	if k == 0 {
		return false, nil
	}
	var home, shard *redis.StringCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		home = p.HGet(ctx, l.meta(0), fStatus)
		shard = p.HGet(ctx, l.meta(k), fStatus)
		return nil
	})
	if err != nil || home.Val() == shard.Val() {
		return false, nil
	}
	return true, s.copyStatus(ctx, l)
}

// shardMetas reads the meta hashes of shards 1…N-1 in one round trip.
func (s *Store) shardMetas(ctx context.Context, l layout) ([]map[string]string, error) {
	if l.n == 1 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, 0, l.n-1)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k := int64(1); k < l.n; k++ {
			cmds = append(cmds, p.HGetAll(ctx, l.meta(k)))
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("shards of "+l.id, err)
	}
	out := make([]map[string]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}
