package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/repermit/repermit/launch"
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
	d, err := t.Store.BaselineImport(ctx, rawPrefix, rows, row)
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
	st := t.store(storePrefix)
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
