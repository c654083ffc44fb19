package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open connects to the Redis at url (redis://host:port/db, rediss:// for
// TLS) and checks within five seconds that it answers. The store owns the
// connection: Close closes it. A url that does not parse is an EINVALID
// error (see ParseURL).
func Open(ctx context.Context, url, prefix string) (*Store, error) {
	opt, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, unavailable("redis at "+opt.Addr, err)
	}
	s := New(rdb, prefix)
	s.ownsClient = true
	return s, nil
}

// Addr names the server for messages: host:port, never credentials.
func (s *Store) Addr() string {
	if c, ok := s.rdb.(*redis.Client); ok {
		return c.Options().Addr
	}
	return "redis"
}

// Close closes the connection if Open made it; a store from New leaves
// its client to the caller.
func (s *Store) Close() error {
	if !s.ownsClient {
		return nil
	}
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("close redis: %w", err)
	}
	return nil
}
