// Package bench measures repermit's hot paths beside a baseline measured in
// the same run on the same machine: a plain go-mail loop for sending, raw
// pipelined HSETs for import and expiry, a net/http hello handler for the
// web pages. A figure alone says little about a 2-core laptop or a 32-core
// server; its ratio to the baseline says how much the engine costs on top
// of the libraries it is built on.
//
// Every bench writes only keys under its Target's prefix (and the asynq
// queue of that name) and deletes them when it ends, so it can run against
// a Redis that holds real campaigns. Traffic goes only to 127.0.0.1.
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/repermit/repermit/redisstore"
)

// Target is the Redis a bench runs against.
type Target struct {
	// Store is a connection to that Redis; the bench makes stores of its
	// own prefixes on it.
	Store *redisstore.Store
	// Prefix is the store's key prefix and the asynq queue name; it must be
	// unique to the run, because the bench deletes every key under it.
	Prefix string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// NewPrefix returns a fresh prefix "bench-<12 hex digits>".
func NewPrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "bench-" + hex.EncodeToString(b)
}

func (t Target) logf(format string, args ...any) {
	if t.Log != nil {
		fmt.Fprintf(t.Log, format+"\n", args...)
	}
}

func (t Target) check() error {
	if t.Store == nil {
		return fmt.Errorf("bench: no Redis client")
	}
	if !strings.HasPrefix(t.Prefix, "bench-") && !strings.HasPrefix(t.Prefix, "t") {
		// The bench deletes everything under its prefix; a mistyped
		// REPERMIT_PREFIX must not cost a real campaign.
		return fmt.Errorf("bench: prefix %q does not look like a bench's own (use NewPrefix)", t.Prefix)
	}
	return nil
}

// cleanup deletes every key the bench wrote: the store's keys under the
// prefix and asynq's keys of the queue named after it. It uses a fresh
// context, since the run's may have ended.
func (t Target) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, pattern := range []string{t.Prefix + ":*", "asynq:{" + t.Prefix + "}*"} {
		if err := t.deleteMatching(ctx, pattern); err != nil {
			return err
		}
	}
	return nil
}

func (t Target) deleteMatching(ctx context.Context, pattern string) error {
	return t.Store.DeleteMatching(ctx, pattern)
}

func (t Target) memoryUnder(ctx context.Context, pattern string) (int64, error) {
	return t.Store.MemoryUnder(ctx, pattern)
}

// store returns a store under prefix on the Target's connection.
func (t Target) store(prefix string) *redisstore.Store { return t.Store.WithPrefix(prefix) }

// row is one generated recipient. The addresses look like real ones and
// stay short enough (under 64 bytes with name and locale) for Redis to keep
// their hashes as listpacks, as most real lists do.
func row(i int) (email, name, locale string) {
	locales := [...]string{"en", "de", "de-AT", "fr"}
	n := strconv.Itoa(i)
	return "reader." + n + "@mail" + strconv.Itoa(i%97) + ".example.com", "Reader " + n, locales[i%len(locales)]
}

// campaignFiles writes a campaign file and a recipients CSV of n rows into
// dir and returns the campaign file's path.
func campaignFiles(dir, id string, n int, deadline string) (string, error) {
	csvPath := filepath.Join(dir, "recipients.csv")
	f, err := os.Create(csvPath)
	if err != nil {
		return "", fmt.Errorf("write recipients: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	w.WriteString("email,name,locale\n")
	for i := range n {
		email, name, locale := row(i)
		w.WriteString(email + "," + name + "," + locale + "\n")
	}
	// bufio keeps the first write error and Flush returns it.
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write recipients: %w", err)
	}
	yaml := fmt.Sprintf(`id: %s
from: "Bench News <news@bench.example.com>"
subject: "Do you still want Bench News?"
recipients: recipients.csv
confirm_base_url: https://consent.bench.example.com
deadline: %s
controller:
  name: Bench Ltd
  address: "1 Bench Street, Benchtown"
  contact: privacy@bench.example.com
  privacy_url: https://bench.example.com/privacy
`, id, deadline)
	path := filepath.Join(dir, "campaign.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		return "", fmt.Errorf("write campaign file: %w", err)
	}
	return path, nil
}

// rate returns n per second of d, 0 for a zero duration.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round(float64(n) / d.Seconds())
}

// ratio returns ours/baseline rounded to three places.
func ratio(ours, baseline float64) float64 {
	if baseline <= 0 {
		return 0
	}
	return math.Round(ours/baseline*1000) / 1000
}

func round(v float64) float64 {
	switch {
	case v >= 100:
		return math.Round(v)
	case v >= 1:
		return math.Round(v*100) / 100
	default:
		return math.Round(v*10000) / 10000
	}
}

// percentile returns the p-th percentile (0..100) of ds, which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }
