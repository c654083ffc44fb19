package ledgerio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// Ledgers of campaigns launched before the consent log are JSON lines of
// repermit.LegacyConsentRecord, hash-chained, followed by an unsigned
// trailer {"head":"<hash of the last record>","records":N}.

// Trailer is the last line of an export of the old kind.
type Trailer struct {
	Head    string `json:"head"`
	Records int64  `json:"records"`
}

// exportLegacy writes a campaign of the old kind as it always was.
func exportLegacy(ctx context.Context, w io.Writer, s *redisstore.Store, id string) error {
	head, n, err := s.LedgerHead(ctx, id)
	if err != nil {
		return err
	}
	var written int64
	last := ""
	err = s.RawLedger(ctx, id, -1, func(raw []byte, _ string) error {
		if written == n {
			return errEnough
		}
		var rec repermit.LegacyConsentRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("export ledger %s: %w", id, err)
		}
		b, _ := json.Marshal(rec)
		if _, err := w.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("export ledger %s: %w", id, err)
		}
		written++
		last = rec.Hash
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	if written != n || last != head {
		return fmt.Errorf("export ledger %s: stored ledger has %d records ending in %q, its head says %d ending in %q", id, written, last, n, head)
	}
	b, _ := json.Marshal(Trailer{Head: head, Records: n})
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("export ledger %s: %w", id, err)
	}
	return nil
}

// verifyLegacy checks a ledger of the old kind: each record's sequence,
// link and hash, and the trailer.
func verifyLegacy(r io.Reader, name string) (n int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	bad := func(line int, format string, args ...any) error {
		return repermit.Errorf(repermit.EINVALID, "%s:%d: %s", name, line, fmt.Sprintf(format, args...))
	}
	prev := ""
	line := 0
	var trailer *Trailer
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if trailer != nil {
			return n, bad(line, "line after the trailer")
		}
		if t, ok := parseTrailer(b); ok {
			if t.Records != int64(n) || t.Head != prev {
				return n, bad(line, "trailer says %d records ending in %.12s…, the file has %d ending in %.12s… (records removed from the end)", t.Records, t.Head, n, prev)
			}
			trailer = &t
			continue
		}
		var rec repermit.LegacyConsentRecord
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return n, bad(line, "not a consent record: %v", err)
		}
		want := int64(n + 1)
		switch {
		case rec.Seq != want:
			return n, bad(line, "sequence %d, want %d (removed or reordered record)", rec.Seq, want)
		case rec.Prev != prev:
			return n, bad(line, "previous hash does not match the record before (removed or reordered record)")
		case rec.ComputeHash() != rec.Hash:
			return n, bad(line, "hash mismatch (edited record)")
		}
		prev = rec.Hash
		n++
	}
	if err := sc.Err(); err != nil {
		return n, repermit.Errorf(repermit.EINVALID, "%s:%d: %v", name, line+1, err)
	}
	if trailer == nil {
		return n, repermit.Errorf(repermit.EINVALID, "%s: no trailer line {\"head\":…,\"records\":…}: the file is cut short or not from repermit export", name)
	}
	return n, nil
}

// parseTrailer recognises the trailer: an object with exactly the keys
// head and records.
func parseTrailer(b []byte) (Trailer, bool) {
	if !bytes.Contains(b, []byte(`"head"`)) {
		return Trailer{}, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || len(m) != 2 || m["head"] == nil || m["records"] == nil {
		return Trailer{}, false
	}
	var t Trailer
	if json.Unmarshal(b, &t) != nil {
		return Trailer{}, false
	}
	return t, true
}
