package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// ExpireResult is the outcome of Expire; the JSON keys are a contract.
type ExpireResult struct {
	Recipients   int     `json:"recipients"`
	ExpiredPerS  float64 `json:"expired_per_s"`
	Seconds      float64 `json:"seconds"`
	BaselinePerS float64 `json:"baseline_expired_per_s"`
	BaselineSecs float64 `json:"baseline_seconds"`
	Ratio        float64 `json:"ratio"`

	Shape Shape `json:"shape"`
	// BytesBefore and BytesAfter are MEMORY USAGE summed over every key
	// of the store (campaign and suppression list), per recipient, before
	// and after the expiry: erasure should leave less, not more.
	BytesBefore float64 `json:"bytes_per_recipient_before"`
	BytesAfter  float64 `json:"bytes_per_recipient_after"`
	// UsedMemoryDelta is INFO used_memory after the expiry minus before,
	// per recipient (negative: Redis shrank).
	UsedMemoryDelta float64 `json:"used_memory_delta_per_recipient"`
	// BucketEncodings after the expiry (OBJECT ENCODING).
	BucketEncodings map[string]int64 `json:"bucket_encodings_after"`
}

// Expire imports n silent recipients, then expires all of them the way
// the deadline does, and measures expired recipients per second. The
// baseline does the least any expiry must do on the same packed buckets:
// one pipelined HSET of the new state codes and HDEL of the addresses per
// bucket, without reading, checking, counting or suppressing anything.
func Expire(ctx context.Context, t Target, n int) (ExpireResult, error) {
	if err := t.check(); err != nil {
		return ExpireResult{}, err
	}
	if n <= 0 {
		return ExpireResult{}, fmt.Errorf("bench expire: recipients must be positive")
	}
	defer t.cleanup()
	res := ExpireResult{Recipients: n, Shape: t.shape()}

	t.logf("expire: baseline, %d recipients in raw buckets", n)
	rawPrefix := t.Prefix + ":raw:"
	if _, err := t.Store.BaselineImport(ctx, rawPrefix, n, t.row); err != nil {
		return res, err
	}
	d, err := t.Store.BaselineExpire(ctx, rawPrefix, n)
	if err != nil {
		return res, err
	}
	res.BaselineSecs = round(d.Seconds())
	res.BaselinePerS = rate(n, d)
	if err := t.deleteMatching(ctx, rawPrefix+"*"); err != nil {
		return res, err
	}

	t.logf("expire: importing %d recipients", n)
	st := t.store(t.Prefix + ":store")
	now := time.Now()
	c, err := importDirect(ctx, st, "bench-expire", n, now, t.row)
	if err != nil {
		return res, err
	}
	// Only the mailed expire (the never mailed end unreached and keep
	// their address), so every recipient is mailed first, outside the
	// timing.
	if err := markAllSent(ctx, st, c.ID, int64(n), now); err != nil {
		return res, err
	}
	storePattern := t.Prefix + ":store:*"
	memBefore, err := t.memoryUnder(ctx, storePattern)
	if err != nil {
		return res, err
	}
	usedBefore := t.usedMemory(ctx)
	t.logf("expire: expiring %d recipients", n)
	start := time.Now()
	expired, err := expireAll(ctx, st, c.ID, int64(n), time.Now())
	d = time.Since(start)
	if err != nil {
		return res, err
	}
	if expired != n {
		return res, fmt.Errorf("bench expire: %d of %d recipients expired", expired, n)
	}
	stats, err := st.Stats(ctx, c.ID)
	if err != nil {
		return res, err
	}
	if got := stats.Counts[repermit.StateExpired]; got != int64(n) {
		return res, fmt.Errorf("bench expire: the campaign counts %d expired, want %d", got, n)
	}
	memAfter, err := t.memoryUnder(ctx, storePattern)
	if err != nil {
		return res, err
	}
	if usedAfter := t.usedMemory(ctx); usedBefore >= 0 && usedAfter >= 0 {
		res.UsedMemoryDelta = round(float64(usedAfter-usedBefore) / float64(n))
	}
	res.BytesBefore = round(float64(memBefore) / float64(n))
	res.BytesAfter = round(float64(memAfter) / float64(n))
	res.BucketEncodings = t.encodings(ctx, st, c.ID)
	res.Seconds = round(d.Seconds())
	res.ExpiredPerS = rate(n, d)
	res.Ratio = ratio(res.ExpiredPerS, res.BaselinePerS)
	return res, nil
}

// importDirect imports n generated recipients through the store, without
// a CSV, for benches that measure what comes after the import.
func importDirect(ctx context.Context, st *redisstore.Store, id string, n int, now time.Time, row func(int) (string, string, string, map[string]string)) (repermit.Campaign, error) {
	c := repermit.Campaign{
		ID:             id,
		From:           "Bench News <news@bench.example.com>",
		Subject:        "Do you still want Bench News?",
		ConfirmBaseURL: "https://consent.bench.example.com",
		StartAt:        now,
		Deadline:       now.Add(30 * 24 * time.Hour),
		// As launch would: one shard on a single node, one per 16,384
		// recipients on a cluster.
		Shards: st.ShardsFor(n),
	}
	imp, err := st.BeginImport(ctx, c, now)
	if err != nil {
		return c, fmt.Errorf("import %s: %w", id, err)
	}
	for i := range n {
		email, name, locale, extra := row(i)
		if err := imp.Add(ctx, email, name, locale, extra); err != nil {
			imp.Abort(ctx)
			return c, fmt.Errorf("import %s: %w", id, err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: id, Imported: int64(n)}); err != nil {
		imp.Abort(ctx)
		return c, fmt.Errorf("import %s: %w", id, err)
	}
	return imp.Campaign(), nil
}

// expireConcurrency is how many buckets expire at once, the worker's
// default (worker.Config.ExpireConcurrency). Redis runs one script at a
// time, so more only hides the round trips.
const expireConcurrency = 8

// expireAll expires every bucket of a campaign, then moves the queued
// address hashes onto the global suppression list, as the worker's expire
// task does at the deadline (worker/expire.go, which exports no entry
// point; it also writes a cursor every 256 buckets, two round trips that
// do not show at this scale).
func expireAll(ctx context.Context, st *redisstore.Store, id string, imported int64, now time.Time) (int, error) {
	buckets := redisstore.Buckets(imported)
	var next, total atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, expireConcurrency)
	for w := range expireConcurrency {
		wg.Go(func() {
			for {
				b := next.Add(1) - 1
				if b >= buckets {
					return
				}
				n, _, err := st.ExpireBucket(ctx, id, b, now)
				if err != nil {
					errs[w] = err
					return
				}
				total.Add(int64(n))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return int(total.Load()), err
	}
	if err := st.DrainSuppression(ctx, id); err != nil {
		return int(total.Load()), err
	}
	return int(total.Load()), nil
}

// markAllSent records the initial mail of every recipient, one claim and
// one mark-sent script call per bucket.
func markAllSent(ctx context.Context, st *redisstore.Store, id string, imported int64, now time.Time) error {
	for b := int64(0); b < redisstore.Buckets(imported); b++ {
		idxs := make([]int64, 0, redisstore.BucketSize)
		for i := b * redisstore.BucketSize; i < min(imported, (b+1)*redisstore.BucketSize); i++ {
			idxs = append(idxs, i)
		}
		for _, mark := range []func() ([]error, error){
			func() ([]error, error) { return st.ClaimBatch(ctx, id, idxs, 1, now, time.Hour) },
			func() ([]error, error) { return st.MarkSentBatch(ctx, id, idxs, 1, now) },
		} {
			errs, err := mark()
			if err == nil {
				err = errors.Join(errs...)
			}
			if err != nil {
				return fmt.Errorf("bench expire: mailing bucket %d: %w", b, err)
			}
		}
	}
	return nil
}
