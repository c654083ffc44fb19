package consentlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/repermit/repermit"
)

// An exported log is JSON lines:
//
//	{"log":"repermit consent log","campaign":"ID"}     the header, first line
//	{"seq":1,"campaign":"ID",…}                        records, in log order
//	{"checkpoint":"repermit consent log ID\n…"}        a signed checkpoint of
//	                                                   the records above it
//
// Each checkpoint follows the record that completes its size, and the last
// line is a checkpoint of all records.

// LogFormat is the header's "log" value.
const LogFormat = "repermit consent log"

// Header is the first line of an exported log.
type Header struct {
	Log      string `json:"log"`
	Campaign string `json:"campaign"`
}

// CheckpointLine is a checkpoint's line in an exported log.
type CheckpointLine struct {
	Checkpoint string `json:"checkpoint"`
}

// IsLogHeader reports whether line is the header of a consent log (as
// opposed to the first record of a ledger of the old kind).
func IsLogHeader(line []byte) bool {
	return bytes.HasPrefix(bytes.TrimSpace(line), []byte(`{"log":`))
}

// Tree holds the stored hashes of a log in memory (64 bytes a record), to
// check checkpoints and make proofs of a log read from a file.
type Tree struct {
	hashes []tlog.Hash
	n      int64
}

// Add appends a record's leaf hash.
func (t *Tree) Add(leaf tlog.Hash) error {
	hs, err := tlog.StoredHashesForRecordHash(t.n, leaf, t)
	if err != nil {
		return err
	}
	t.hashes = append(t.hashes, hs...)
	t.n++
	return nil
}

// Size is the number of records added.
func (t *Tree) Size() int64 { return t.n }

// ReadHashes implements tlog.HashReader.
func (t *Tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("stored hash %d not in a tree of %d records", x, t.n)
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

// Hash is the tree hash over the first n records.
func (t *Tree) Hash(n int64) (tlog.Hash, error) { return tlog.TreeHash(n, t) }

// Summary tells what a verified log holds.
type Summary struct {
	Campaign    string
	Records     int64
	Checkpoints int
	Last        Checkpoint // the last checkpoint, of all records
}

// maxLine bounds one line; real records are well under 2 KiB.
const maxLine = 1 << 20

// VerifyLog checks an exported log strictly, one line at a time: the
// header, each record (canonical JSON, known lower-case keys once each,
// sequence), and each checkpoint (signed by v, canonical, consistent with
// the one before, its tree hash recomputed from the records above it,
// which proves each of them included). witnessed are signed checkpoints
// kept elsewhere (a witness file): each must match the log too, which
// detects a log cut back behind a checkpoint that was sent out.
//
// Errors are EINVALID and start with name and the line number.
func VerifyLog(r io.Reader, name string, v note.Verifier, witnessed []Checkpoint) (Summary, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	bad := func(line int, format string, args ...any) error {
		return repermit.Errorf(repermit.EINVALID, "%s:%d: %s", name, line, fmt.Sprintf(format, args...))
	}
	var sum Summary
	var tree Tree
	line := 0
	// firstUnsigned is the line of the first record no checkpoint covers
	// yet; lastCP the line of the last checkpoint.
	firstUnsigned, lastCP := 0, 0
	var prev *Checkpoint
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if line == 1 {
			var h Header
			if err := checkKeys(b, "log", "campaign"); err != nil {
				return sum, bad(line, "not the header of a consent log: %v", err)
			}
			if err := json.Unmarshal(b, &h); err != nil || h.Log != LogFormat || h.Campaign == "" || !canonical(b, h) {
				return sum, bad(line, "not the header of a consent log")
			}
			sum.Campaign = h.Campaign
			continue
		}
		if bytes.HasPrefix(b, []byte(`{"checkpoint":`)) {
			var cl CheckpointLine
			if err := checkKeys(b, "checkpoint"); err != nil {
				return sum, bad(line, "%v", err)
			}
			if err := json.Unmarshal(b, &cl); err != nil || !canonical(b, cl) {
				return sum, bad(line, "checkpoint line is not in canonical form")
			}
			cp, err := Open(cl.Checkpoint, v)
			if err != nil {
				return sum, bad(line, "%v (forged or altered checkpoint)", err)
			}
			switch {
			case cp.Campaign != sum.Campaign:
				return sum, bad(line, "checkpoint of campaign %q in the log of %q", cp.Campaign, sum.Campaign)
			case cp.Size != tree.Size():
				return sum, bad(line, "checkpoint signs %d records, %d stand before it (records removed or added)", cp.Size, tree.Size())
			case prev != nil && cp.Size <= prev.Size:
				return sum, bad(line, "checkpoint of %d records after one of %d", cp.Size, prev.Size)
			case prev != nil && cp.Time.Before(prev.Time):
				return sum, bad(line, "checkpoint time %s before the previous one's %s", cp.Time.Format(timeLayout), prev.Time.Format(timeLayout))
			}
			th, err := tree.Hash(cp.Size)
			if err != nil {
				return sum, bad(line, "%v", err)
			}
			if th != cp.Hash {
				from := lastCP + 1
				if prev == nil {
					from = 2
				}
				return sum, bad(line, "the records on lines %d-%d do not hash to this signed checkpoint (a record was edited, removed, added or reordered)", from, line-1)
			}
			if prev != nil {
				// Implied by recomputing the tree from the same leaves, and
				// checked as a witness would, from the two heads alone.
				p, err := tlog.ProveTree(cp.Size, prev.Size, &tree)
				if err == nil {
					err = tlog.CheckTree(p, cp.Size, cp.Hash, prev.Size, prev.Hash)
				}
				if err != nil {
					return sum, bad(line, "checkpoint not consistent with the one on line %d: %v", lastCP, err)
				}
			}
			prev, lastCP, firstUnsigned = &cp, line, 0
			sum.Checkpoints++
			sum.Last = cp
			continue
		}
		rec, err := repermit.ParseRecord(b)
		if err != nil {
			return sum, bad(line, "%v", err)
		}
		switch want := tree.Size() + 1; {
		case rec.Seq != want:
			return sum, bad(line, "sequence %d, want %d (removed, added or reordered record)", rec.Seq, want)
		case rec.Campaign != sum.Campaign:
			return sum, bad(line, "record of campaign %q in the log of %q", rec.Campaign, sum.Campaign)
		}
		if err := tree.Add(tlog.RecordHash(b)); err != nil {
			return sum, bad(line, "%v", err)
		}
		if firstUnsigned == 0 {
			firstUnsigned = line
		}
	}
	if err := sc.Err(); err != nil {
		return sum, bad(line+1, "%v", err)
	}
	if line == 0 {
		return sum, repermit.Errorf(repermit.EINVALID, "%s: empty file, not a consent log", name)
	}
	if firstUnsigned != 0 {
		return sum, bad(firstUnsigned, "no signed checkpoint covers this record or those after it (added records, or the file is cut short)")
	}
	sum.Records = tree.Size()
	for _, w := range witnessed {
		if w.Campaign != sum.Campaign {
			continue
		}
		if w.Size > tree.Size() {
			return sum, repermit.Errorf(repermit.EINVALID, "%s:%d: the log ends at %d records, a witnessed checkpoint of %s signs %d (records removed from the end)", name, line, tree.Size(), w.Time.Format(timeLayout), w.Size)
		}
		th, err := tree.Hash(w.Size)
		if err != nil {
			return sum, bad(line, "%v", err)
		}
		if th != w.Hash {
			return sum, repermit.Errorf(repermit.EINVALID, "%s: the first %d records differ from the witnessed checkpoint of %s (history rewritten)", name, w.Size, w.Time.Format(timeLayout))
		}
	}
	return sum, nil
}

// canonical reports whether b is exactly json.Marshal(v).
func canonical(b []byte, v any) bool {
	m, err := json.Marshal(v)
	return err == nil && bytes.Equal(m, b)
}

// checkKeys refuses an object with keys other than allowed (exact case) or
// a key twice.
func checkKeys(b []byte, allowed ...string) error {
	return repermit.CheckKeys(b, allowed)
}
