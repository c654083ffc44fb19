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
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
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
	// Shape is what the generated lists look like; "" is ShapeRealistic.
	Shape Shape
}

// NewPrefix returns a fresh prefix "bench-<12 hex digits>".
func NewPrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "bench-" + hex.EncodeToString(b)
}

// newSecret returns a fresh link secret (REPERMIT_SECRET) for one run.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
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

// usedMemory returns INFO memory's used_memory, or -1 where the Redis has
// none (miniredis), which it logs.
func (t Target) usedMemory(ctx context.Context) int64 {
	v, err := t.Store.UsedMemory(ctx)
	if err != nil {
		t.logf("used_memory not measured: %v", err)
		return -1
	}
	return v
}

// encodings returns the count of campaign id's buckets per encoding, or
// nil where the Redis cannot tell (miniredis), which it logs.
func (t Target) encodings(ctx context.Context, st *redisstore.Store, id string) map[string]int64 {
	m, err := st.BucketEncodings(ctx, id)
	if err != nil {
		t.logf("bucket encodings not measured: %v", err)
		return nil
	}
	return m
}

// store returns a store under prefix on the Target's connection.
func (t Target) store(prefix string) *redisstore.Store { return t.Store.WithPrefix(prefix) }

// shape returns the Target's shape, ShapeRealistic when unset.
func (t Target) shape() Shape {
	if t.Shape == "" {
		return ShapeRealistic
	}
	return t.Shape
}

// row returns row i of the Target's list in the form the store's import
// takes.
func (t Target) row(i int) (email, name, locale string, extra map[string]string) {
	r := t.shape().Generate(i)
	return r.Email, r.Name, r.Locale, r.Extra
}

// WriteList writes the list the benches generate, n rows of shape, as a
// recipients CSV with its campaign file (id, deadline 30d, one waves: line
// when waves is set) into dir, for measuring `repermit launch` itself. It
// returns the campaign file's path.
func WriteList(dir, id string, n int, shape Shape, waves bool) (string, error) {
	path, err := campaignFiles(dir, id, n, "30d", shape)
	if err != nil || !waves {
		return path, err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return "", fmt.Errorf("write campaign file: %w", err)
	}
	_, err = f.WriteString("waves: {pilot: 1000, grow: 4, observe: 1h}\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write campaign file: %w", err)
	}
	return path, nil
}

// campaignFiles writes a campaign file and a recipients CSV of n rows of
// the given shape into dir and returns the campaign file's path.
func campaignFiles(dir, id string, n int, deadline string, shape Shape) (string, error) {
	csvPath := filepath.Join(dir, "recipients.csv")
	f, err := os.Create(csvPath)
	if err != nil {
		return "", fmt.Errorf("write recipients: %w", err)
	}
	w := csv.NewWriter(f)
	header := []string{"email"}
	if shape != ShapeMinimal {
		header = append(header, "name", "locale")
		header = append(header, extraColumns...)
	}
	w.Write(header)
	rec := make([]string, len(header))
	for i := range n {
		r := shape.Generate(i)
		rec[0] = r.Email
		if shape != ShapeMinimal {
			rec[1], rec[2] = r.Name, r.Locale
			for k, col := range extraColumns {
				rec[3+k] = r.Extra[col]
			}
		}
		w.Write(rec)
	}
	// csv keeps the first write error and Error reports it after Flush.
	w.Flush()
	err = w.Error()
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
