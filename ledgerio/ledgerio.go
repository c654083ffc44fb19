// Package ledgerio writes a campaign's consent ledger as JSON lines and
// verifies such a file.
//
// Format: one repermit.ConsentRecord per line, in ledger order, followed by
// one trailer line
//
//	{"head":"<hash of the last record>","records":<number of records>}
//
// The hash chain shows an edited, reordered or removed record, except the
// removal of records at the end: the shortened chain is still intact. The
// trailer, taken from the head Redis keeps beside the ledger, closes that
// gap for a file cut short by accident. It is not signed: whoever can
// rewrite the file can rewrite the trailer, so to hold an export against
// deliberate truncation, keep the head (the last line) somewhere the file's
// holder cannot change it, e.g. print it in the audit report.
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

// Trailer is the last line of an export.
type Trailer struct {
	Head    string `json:"head"`
	Records int64  `json:"records"`
}

var errEnough = errors.New("enough records")

// Export writes the ledger of campaign id to w: the records Redis held
// when the export began, then the trailer. Records appended during the
// export are left for the next one. It fails, writing no trailer, when
// the stored ledger does not reach the stored head.
func Export(ctx context.Context, w io.Writer, s *redisstore.Store, id string) error {
	head, n, err := s.LedgerHead(ctx, id)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	var written int64
	last := ""
	err = s.Ledger(ctx, id, func(rec repermit.ConsentRecord, _ string) error {
		if written == n {
			return errEnough
		}
		if err := enc.Encode(rec); err != nil {
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
	if err := enc.Encode(Trailer{Head: head, Records: n}); err != nil {
		return fmt.Errorf("export ledger %s: %w", id, err)
	}
	return nil
}

// maxLine bounds one record; real ones are well under 2 KiB.
const maxLine = 1 << 20

// Verify reads an export and checks every record's sequence, link and
// hash, as repermit.VerifyLedger does, and the trailer. It reads one line
// at a time, so a ledger of any length fits. Errors are EINVALID and start
// with name and the line number: "ledger.jsonl:7: hash mismatch (edited
// record)". n is the number of records checked.
func Verify(r io.Reader, name string) (n int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
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
		var rec repermit.ConsentRecord
		dec := json.NewDecoder(bytes.NewReader(b))
		// A field the hash does not cover must not ride along unnoticed.
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return n, bad(line, "not a consent record: %v", err)
		}
		// The same three checks as repermit.VerifyLedger, in the same
		// order, one record at a time; a test holds the two to agreement.
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
