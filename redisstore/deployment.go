package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// Deployment returns the id of this deployment (this prefix in this
// Redis), creating it on first use: 128 random bits, kept for good. Link
// tokens are bound to it (token.NewBoundSigner), so a token signed for one
// deployment opens nothing in another that shares the secret.
func (s *Store) Deployment(ctx context.Context) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("deployment id: %w", err)
	}
	key := s.prefix + ":deployment"
	if err := s.rdb.SetNX(ctx, key, hex.EncodeToString(b), 0).Err(); err != nil {
		return "", unavailable("deployment id", err)
	}
	id, err := s.rdb.Get(ctx, key).Result()
	if err != nil {
		return "", unavailable("deployment id", err)
	}
	return id, nil
}
