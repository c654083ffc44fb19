package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open connects to the Redis at url (redis://host:port/db, rediss:// for
// TLS, redis+cluster:// or redis+sentinel://, see Endpoint) and checks
// within five seconds that it answers; on a cluster, that every master
// does. The store owns the connection: Close closes it. A url that does
// not parse is an EINVALID error (see ParseEndpoint).
func Open(ctx context.Context, url, prefix string) (*Store, error) {
	e, err := ParseEndpoint(url)
	if err != nil {
		return nil, err
	}
	rdb := e.client()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = rdb.Ping(pctx).Err()
	if c, ok := rdb.(*redis.ClusterClient); ok && err == nil {
		err = c.ForEachMaster(pctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() })
	}
	if err != nil {
		rdb.Close()
		return nil, unavailable("redis at "+e.String(), err)
	}
	s := New(rdb, prefix)
	s.ownsClient = true
	s.addr = e.String()
	return s, nil
}

// Addr names the server for messages: host:port (or the cluster's or
// Sentinels' list), never credentials.
func (s *Store) Addr() string {
	if s.addr != "" {
		return s.addr
	}
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
