package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The baselines of package bench: the same data written with plain
// pipelined commands, the floor an engine on this Redis could reach. They
// live here because this package alone speaks Redis. Each writes only
// under keyPrefix, which must be a bench's own: it is deleted afterwards.

// BaselineImport writes rows the way the store packs them, 128 to a hash
// with a state and a data field each, in pipelines of 8192 commands, and
// returns how long that took.
func (s *Store) BaselineImport(ctx context.Context, keyPrefix string, rows int, row func(i int) (email, name, locale string, extra map[string]string)) (time.Duration, error) {
	start := time.Now()
	pipe := s.rdb.Pipeline()
	for i := range rows {
		email, name, locale, extra := row(i)
		b, slot := i/BucketSize, strconv.Itoa(i%BucketSize)
		var cols columnIndex
		fields := append([]any{"s" + slot, "p"}, rowFields(slot, encodeRow(email, name, locale, extra, &cols))...)
		pipe.HSet(ctx, keyPrefix+"b:"+strconv.Itoa(b), fields...)
		if pipe.Len() == 8192 || i == rows-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, fmt.Errorf("baseline import: %w", err)
			}
		}
	}
	return time.Since(start), nil
}

// BaselineExpire sets every state field BaselineImport wrote to expired
// and deletes every address field, one HSET and one HDEL per bucket,
// pipelined 64 buckets at a time; it checks, outside the timing, that the
// addresses are gone.
func (s *Store) BaselineExpire(ctx context.Context, keyPrefix string, n int) (time.Duration, error) {
	buckets := Buckets(int64(n))
	start := time.Now()
	pipe := s.rdb.Pipeline()
	for b := int64(0); b < buckets; b++ {
		key := keyPrefix + "b:" + strconv.FormatInt(b, 10)
		size := min(BucketSize, n-int(b)*BucketSize)
		set := make([]any, 0, 2*size)
		del := make([]string, 0, size)
		for slot := range size {
			s := strconv.Itoa(slot)
			set = append(set, "s"+s, "e")
			del = append(del, dataFields(s)...)
		}
		pipe.HSet(ctx, key, set...)
		pipe.HDel(ctx, key, del...)
		if pipe.Len() >= 128 || b == buckets-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, fmt.Errorf("baseline expire: %w", err)
			}
		}
	}
	d := time.Since(start)
	left, err := s.rdb.HGet(ctx, keyPrefix+"b:0", "d0").Result()
	if err == nil {
		return 0, fmt.Errorf("baseline expire: address %q still there", left)
	}
	if !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("baseline expire: %w", err)
	}
	return d, nil
}

// MemoryUnder sums MEMORY USAGE over every key matching pattern: what the
// data costs in Redis, without the noise other clients add to INFO's
// used_memory.
func (s *Store) MemoryUnder(ctx context.Context, pattern string) (int64, error) {
	var total atomic.Int64
	err := s.forEachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
		return scanKeys(ctx, node, pattern, func(keys []string) error {
			cmds := make([]*redis.IntCmd, len(keys))
			usage := func(samples ...int) error {
				_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i, k := range keys {
						cmds[i] = p.MemoryUsage(ctx, k, samples...)
					}
					return nil
				})
				if errors.Is(err, redis.Nil) {
					return nil
				}
				return err
			}
			err := usage(0) // SAMPLES 0: every field, not 5
			if err != nil && strings.Contains(err.Error(), "syntax error") {
				// miniredis knows MEMORY USAGE without SAMPLES only.
				err = usage()
			}
			if err != nil {
				return fmt.Errorf("memory usage: %w", err)
			}
			for _, c := range cmds {
				total.Add(c.Val())
			}
			return nil
		})
	})
	return total.Load(), err
}

// DeleteMatching deletes every key matching pattern, a thousand at a time.
// It is for benches and tests that own every key the pattern matches.
func (s *Store) DeleteMatching(ctx context.Context, pattern string) error {
	return s.forEachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
		return scanKeys(ctx, node, pattern, func(keys []string) error {
			// One UNLINK per key: on a cluster the keys of one batch sit in
			// many slots, which one multi-key command may not span.
			_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.Unlink(ctx, k)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("delete %s: %w", pattern, err)
			}
			return nil
		})
	})
}

// scanKeys calls fn with the keys of node that match pattern, up to a
// thousand at a time.
func scanKeys(ctx context.Context, node redis.UniversalClient, pattern string, fn func([]string) error) error {
	iter := node.Scan(ctx, 0, pattern, 2000).Iterator()
	keys := make([]string, 0, 1000)
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == cap(keys) {
			if err := fn(keys); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("scan %s: %w", pattern, err)
	}
	if len(keys) > 0 {
		return fn(keys)
	}
	return nil
}

// forEachNode calls fn with the store's client, or on a Redis Cluster with
// a client of each master in turn (SCAN and INFO see one node only).
// ForEachMaster runs its callbacks concurrently; callers collect into plain
// maps and slices, so the calls take turns.
func (s *Store) forEachNode(ctx context.Context, fn func(context.Context, redis.UniversalClient) error) error {
	c, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return fn(ctx, s.rdb)
	}
	var turn sync.Mutex
	return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		turn.Lock()
		defer turn.Unlock()
		return fn(ctx, m)
	})
}

// WithPrefix returns a store under another prefix on the same connection,
// which stays the receiver's to close.
func (s *Store) WithPrefix(prefix string) *Store { return New(s.rdb, prefix) }

// BucketEncodings counts the recipient buckets of campaign id by the
// encoding Redis chose for them (OBJECT ENCODING: "listpack" while every
// value is short and the hash small, "hashtable" after).
func (s *Store) BucketEncodings(ctx context.Context, id string) (map[string]int64, error) {
	hw, err := s.highWater(ctx, id)
	if err != nil {
		return nil, err
	}
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64)
	const chunk = 512
	for start := int64(0); start < hw; start += chunk {
		cmds := make([]*redis.StringCmd, 0, chunk)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for b := start; b < min(hw, start+chunk); b++ {
				cmds = append(cmds, p.ObjectEncoding(ctx, l.bucket(b)))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("object encoding %s: %w", id, err)
		}
		for _, c := range cmds {
			if enc := c.Val(); enc != "" {
				out[enc]++
			}
		}
	}
	return out, nil
}

func (s *Store) highWater(ctx context.Context, id string) (int64, error) {
	v, err := s.rdb.HGet(ctx, s.metaKey(id), fHighWater).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, unavailable("campaign "+id, err)
	}
	return v, nil
}

// UsedMemory returns INFO memory's used_memory: all of Redis, so other
// clients' writes show in a difference of two readings.
// On a cluster it is the sum over the masters.
func (s *Store) UsedMemory(ctx context.Context) (int64, error) {
	var total atomic.Int64
	err := s.forEachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
		info, err := node.Info(ctx, "memory").Result()
		if err != nil {
			return fmt.Errorf("info memory: %w", err)
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total.Add(n)
				return err
			}
		}
		return fmt.Errorf("info memory: no used_memory")
	})
	return total.Load(), err
}

// ServerCPU is the CPU time the Redis servers (every master of a
// cluster) have used since they started, from INFO cpu: a benchmark takes
// the difference over a phase to count Redis's share of the work.
func (s *Store) ServerCPU(ctx context.Context) (time.Duration, error) {
	var total atomic.Int64
	err := s.forEachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
		info, err := node.Info(ctx, "cpu").Result()
		if err != nil {
			return fmt.Errorf("info cpu: %w", err)
		}
		found := 0
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || (k != "used_cpu_sys" && k != "used_cpu_user") {
				continue
			}
			sec, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("info cpu: %s: %w", k, err)
			}
			total.Add(int64(sec * float64(time.Second)))
			found++
		}
		if found != 2 {
			return fmt.Errorf("info cpu: no used_cpu_sys and used_cpu_user")
		}
		return nil
	})
	return time.Duration(total.Load()), err
}

// PackedSize is the length of a recipient's packed data (row.go), before
// it is split into values of at most 64 bytes (Redis'
// hash-max-listpack-value).
func PackedSize(email, name, locale string, extra map[string]string) int {
	var cols columnIndex
	return len(encodeRow(email, name, locale, extra, &cols))
}
