package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

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

	// Shape is the generated list's shape, ListStats what it came to.
	Shape     Shape     `json:"shape"`
	ListStats ListStats `json:"list"`
	// BucketEncodings counts the campaign's recipient hashes by the
	// encoding Redis chose (OBJECT ENCODING), e.g. {"listpack": 7813}.
	BucketEncodings map[string]int64 `json:"bucket_encodings"`
	// UsedMemoryPerRecipient is INFO memory's used_memory after the launch
	// minus before, per row: it includes allocator overhead that MEMORY
	// USAGE (BytesPerRecipient) does not see, and any other client's writes
	// meanwhile.
	UsedMemoryPerRecipient float64 `json:"used_memory_bytes_per_recipient"`
}

// ListStats describes a generated list as the store packs it.
type ListStats struct {
	// MeanPackedBytes is the mean length of a recipient's packed value.
	MeanPackedBytes float64 `json:"mean_packed_bytes"`
	// OverListpackPct is the share of rows, in percent, whose packed value
	// is longer than Redis' default hash-max-listpack-value of 64 bytes.
	OverListpackPct float64 `json:"over_64_bytes_pct"`
	// Domains is how many distinct domains the list has; GmailPct the
	// share at gmail.com, in percent.
	Domains  int     `json:"domains"`
	GmailPct float64 `json:"gmail_pct"`
	// ExtraColumns counts rows by how many extra columns they fill.
	ExtraColumns [4]int `json:"rows_by_extra_columns"`
}

// describe computes the ListStats of the first n rows of shape.
func describe(shape Shape, n int) ListStats {
	var st ListStats
	domains := make(map[string]bool)
	var sum, over, gmail int
	for i := range n {
		r := shape.Generate(i)
		size := redisstore.PackedSize(r.Email, r.Name, r.Locale, r.Extra)
		sum += size
		if size > 64 {
			over++
		}
		_, d, _ := strings.Cut(r.Email, "@")
		if len(domains) < 100000 {
			domains[d] = true
		}
		if d == "gmail.com" {
			gmail++
		}
		st.ExtraColumns[min(len(r.Extra), 3)]++
	}
	if n > 0 {
		st.MeanPackedBytes = round(float64(sum) / float64(n))
		st.OverListpackPct = round(100 * float64(over) / float64(n))
		st.GmailPct = round(100 * float64(gmail) / float64(n))
	}
	st.Domains = len(domains)
	return st
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
	res := ImportResult{Rows: rows, Shape: t.shape(), ListStats: describe(t.shape(), rows)}

	dir, err := os.MkdirTemp("", "repermit-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	id := "bench-import"
	path, err := campaignFiles(dir, id, rows, "30d", t.shape())
	if err != nil {
		return res, err
	}

	t.logf("import: baseline, %d rows of raw pipelined HSET", rows)
	rawPrefix := t.Prefix + ":raw:"
	d, err := t.Store.BaselineImport(ctx, rawPrefix, rows, t.row)
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
	before := t.usedMemory(ctx)
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
	if after := t.usedMemory(ctx); before >= 0 && after >= 0 {
		res.UsedMemoryPerRecipient = round(float64(after-before) / float64(rows))
	}
	res.BucketEncodings = t.encodings(ctx, st, id)
	mem, err = t.memoryUnder(ctx, storePrefix+":*")
	if err != nil {
		return res, err
	}
	res.BytesPerRecipient = round(float64(mem) / float64(rows))
	res.Ratio = ratio(res.RowsPerS, res.BaselineRowsPerS)
	return res, nil
}
