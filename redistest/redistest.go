// Package redistest gives tests a Redis: the real server named by
// REPERMIT_TEST_REDIS_URL when it is set (CI), an in-process miniredis
// otherwise, so that `go test ./...` passes on a machine without Redis.
// Each test gets its own key prefix and its keys are deleted afterwards.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// EnvURL names the variable that points the tests at a real Redis.
const EnvURL = "REPERMIT_TEST_REDIS_URL"

// Redis is one test's view of Redis.
type Redis struct {
	// Client is a *redis.Client, or a *redis.ClusterClient when
	// REPERMIT_TEST_REDIS_URL is a redis+cluster:// URL.
	Client redis.UniversalClient
	// URL reaches the same server, for processes and libraries (asynq) that
	// open their own connections.
	URL string
	// Prefix is unique to the test; keys under it are deleted at cleanup.
	// Use it as the store prefix and as the asynq queue name.
	Prefix string
	// Mini is the in-process server, or nil against a real Redis.
	Mini *miniredis.Miniredis
}

// Real reports whether tests run against a real Redis.
func Real() bool { return os.Getenv(EnvURL) != "" }

// New returns a Redis for t.
func New(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{Prefix: "t" + randHex(t, 6)}
	if url := os.Getenv(EnvURL); url != "" {
		r.URL = url
	} else {
		m := miniredis.NewMiniRedis()
		// Without ClockTTL keys with a TTL never expire in miniredis,
		// asynq's unique-task locks included.
		m.ClockTTL(true)
		if err := m.Start(); err != nil {
			t.Fatalf("start miniredis: %v", err)
		}
		t.Cleanup(m.Close)
		r.Mini = m
		r.URL = "redis://" + m.Addr()
	}
	if hosts, ok := strings.CutPrefix(r.URL, "redis+cluster://"); ok {
		// A Redis Cluster (CI runs the suite against one too): any nodes,
		// comma-separated; the client discovers the rest.
		hosts, _, _ = strings.Cut(hosts, "/")
		r.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(hosts, ",")})
	} else {
		opt, err := redis.ParseURL(r.URL)
		if err != nil {
			t.Fatalf("parse %s=%q: %v", EnvURL, r.URL, err)
		}
		r.Client = redis.NewClient(opt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Client.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s does not answer: %v", r.URL, err)
	}
	t.Cleanup(func() {
		if r.Mini == nil {
			r.deletePrefix(t)
		}
		r.Client.Close()
	})
	return r
}

func (r *Redis) deletePrefix(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Keys are prefix:… for the store and asynq:{prefix}:… for the queue.
	for _, pattern := range []string{r.Prefix + ":*", "asynq:{" + r.Prefix + "*"} {
		err := r.scan(ctx, pattern, func(k string) { r.Client.Unlink(ctx, k) })
		if err != nil && !strings.Contains(err.Error(), "closed") {
			t.Logf("cleanup of %s: %v", pattern, err)
		}
	}
}

// Cluster reports whether the Redis is a Redis Cluster.
func (r *Redis) Cluster() bool {
	_, ok := r.Client.(*redis.ClusterClient)
	return ok
}

// scan calls fn with every key matching pattern, on every master of a
// cluster.
func (r *Redis) scan(ctx context.Context, pattern string, fn func(string)) error {
	each := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			fn(iter.Val())
		}
		return iter.Err()
	}
	if c, ok := r.Client.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			mu.Lock() // fn need not be safe for concurrent use
			defer mu.Unlock()
			return each(ctx, m)
		})
	}
	return each(ctx, r.Client)
}

// Keys returns every key under the test's prefix.
func (r *Redis) Keys(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	if err := r.scan(ctx, r.Prefix+":*", func(k string) { keys = append(keys, k) }); err != nil {
		t.Fatalf("scan keys: %v", err)
	}
	return keys
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
