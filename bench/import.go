package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit/launch"
	"github.com/repermit/repermit/redisstore"
)

// ImportResult is the outcome of Import; the JSON keys are a contract.
type ImportResult struct {
	Rows              int     `json:"rows"`
	RowsPerS          float64 `json:"rows_per_s"`
	Seconds           float64 `json:"seconds"`
	BytesPerRecipient float64 `json:"bytes_per_recipient"`

	BaselineRowsPerS          float64 `json:"baseline_rows_per_s"`
	BaselineBytesPerRecipient float64 `json:"baseline_bytes_per_recipient"`
	Ratio                     float64 `json:"ratio"`
}

// Import launches a campaign of rows generated recipients from a CSV
// (launch.Launch: validation pass, import pass with deduplication and
// suppression lookups, commit) and measures rows per second and Redis bytes
// per recipient. The baseline writes the same rows, packed into hashes the
// same way, with raw pipelined HSETs and nothing else: no file, no parsing,
// no checks.
func Import(ctx context.Context, t Target, rows int) (ImportResult, error) {
	if err := t.check(); err != nil {
		return ImportResult{}, err
	}
	if rows <= 0 {
		return ImportResult{}, fmt.Errorf("bench import: rows must be positive")
	}
	defer t.cleanup()
	res := ImportResult{Rows: rows}

	dir, err := os.MkdirTemp("", "repermit-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	id := "bench-import"
	path, err := campaignFiles(dir, id, rows, "30d")
	if err != nil {
		return res, err
	}

	t.logf("import: baseline, %d rows of raw pipelined HSET", rows)
	rawPrefix := t.Prefix + ":raw:"
	d, err := rawImport(ctx, t.Client, rawPrefix, rows)
	if err != nil {
		return res, err
	}
	res.BaselineRowsPerS = rate(rows, d)
	mem, err := t.memoryUnder(ctx, rawPrefix+"*")
	if err != nil {
		return res, err
	}
	res.BaselineBytesPerRecipient = round(float64(mem) / float64(rows))
	// Gone before our run, so that both start from the same Redis.
	if err := t.deleteMatching(ctx, rawPrefix+"*"); err != nil {
		return res, err
	}

	t.logf("import: launch of a %d-row CSV", rows)
	storePrefix := t.Prefix + ":store"
	st := redisstore.New(t.Client, storePrefix)
	start := time.Now()
	rep, err := launch.Launch(ctx, path, st, nil, launch.Options{})
	d = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("bench import: %w", err)
	}
	if rep.Imported != int64(rows) {
		return res, fmt.Errorf("bench import: launch imported %d of %d rows (%d invalid, %d duplicate, %d suppressed)",
			rep.Imported, rows, rep.SkippedInvalid, rep.SkippedDuplicate, rep.SkippedSuppressed)
	}
	res.Seconds = round(d.Seconds())
	res.RowsPerS = rate(rows, d)
	mem, err = t.memoryUnder(ctx, storePrefix+":*")
	if err != nil {
		return res, err
	}
	res.BytesPerRecipient = round(float64(mem) / float64(rows))
	res.Ratio = ratio(res.RowsPerS, res.BaselineRowsPerS)
	return res, nil
}

// rawImport writes rows the way the store packs them, 128 to a hash with a
// state and a data field each, in pipelines of 8192 commands.
func rawImport(ctx context.Context, rdb redis.UniversalClient, prefix string, rows int) (time.Duration, error) {
	start := time.Now()
	pipe := rdb.Pipeline()
	for i := range rows {
		email, name, locale := row(i)
		b, slot := i/redisstore.BucketSize, strconv.Itoa(i%redisstore.BucketSize)
		pipe.HSet(ctx, prefix+"b:"+strconv.Itoa(b), "s"+slot, "p", "d"+slot, email+"\x1f"+name+"\x1f"+locale)
		if pipe.Len() == 8192 || i == rows-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, fmt.Errorf("baseline import: %w", err)
			}
		}
	}
	return time.Since(start), nil
}
