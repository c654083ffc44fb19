// Package ledgerio writes a campaign's consent log as a file, checks such
// a file, makes checkpoints and per-person proof bundles from the store.
// The formats themselves are consentlog's.
package ledgerio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/redisstore"
)

// Checkpoint brings the campaign's tree up to date and returns its newest
// signed checkpoint, signing a new one when records came in since the last
// and the last is at least gap old. made tells whether this call signed
// one. A campaign without records has no checkpoint (signed == "").
func Checkpoint(ctx context.Context, s *redisstore.Store, id string, signer note.Signer, now time.Time, gap time.Duration) (signed string, made bool, err error) {
	size, th, err := s.SyncTree(ctx, id)
	if err != nil {
		return "", false, err
	}
	cps, err := s.Checkpoints(ctx, id)
	if err != nil {
		return "", false, err
	}
	last := ""
	lastSize := int64(0)
	if len(cps) > 0 {
		last = cps[len(cps)-1]
		lastSize = SignedSize(last)
	}
	if size == 0 || size <= lastSize {
		return last, false, nil
	}
	if signer == nil {
		return last, false, repermit.Errorf(repermit.EINVALID, "campaign %s has %d records, its last checkpoint signs %d: REPERMIT_LEDGER_KEY is needed to sign one", id, size, lastSize)
	}
	at := now.UTC().Truncate(time.Millisecond)
	// Checkpoints may not go back in time (verify-ledger refuses that), and
	// the store keeps none younger than the last: a host whose clock is
	// behind the one that signed the last checkpoint signs at that time, or
	// its export would silently end at the last checkpoint.
	if prev, ok := signedTime(last); ok && at.Before(prev) {
		at = prev
	}
	cp := consentlog.Checkpoint{Campaign: id, Size: size, Hash: th, Time: at}
	msg, err := consentlog.Sign(cp, signer)
	if err != nil {
		return "", false, err
	}
	ok, err := s.AddCheckpoint(ctx, id, size, cp.Time, gap, msg)
	if err != nil {
		return "", false, err
	}
	if !ok {
		// Another process was first, or the gap is not over yet.
		if cps, err = s.Checkpoints(ctx, id); err != nil || len(cps) == 0 {
			return last, false, err
		}
		return cps[len(cps)-1], false, nil
	}
	return msg, true, nil
}

// signedTime reads the time of a stored signed checkpoint without
// checking its signature.
func signedTime(msg string) (time.Time, bool) {
	text, _, ok := strings.Cut(msg, "\n\n")
	if !ok {
		return time.Time{}, false
	}
	cp, err := consentlog.ParseCheckpoint(text + "\n")
	if err != nil {
		return time.Time{}, false
	}
	return cp.Time, true
}

// SignedSize reads the size of a stored signed checkpoint without checking
// its signature (the store wrote it; verifiers check).
func SignedSize(msg string) int64 {
	text, _, ok := strings.Cut(msg, "\n\n")
	if !ok {
		return -1
	}
	cp, err := consentlog.ParseCheckpoint(text + "\n")
	if err != nil {
		return -1
	}
	return cp.Size
}

// Export writes campaign id's consent log: the header, the records, each
// stored checkpoint after the record that completes it, and a checkpoint
// of all records last (signed now with signer when the newest records have
// none yet). Records appended meanwhile are left for the next export. A
// campaign launched before the consent log is written in the old format.
func Export(ctx context.Context, w io.Writer, s *redisstore.Store, id string, signer note.Signer, now time.Time) error {
	isLog, err := s.LedgerIsLog(ctx, id)
	if err != nil {
		return err
	}
	if !isLog {
		return exportLegacy(ctx, w, s, id)
	}
	if _, _, err := Checkpoint(ctx, s, id, signer, now, 0); err != nil {
		return err
	}
	cps, err := s.Checkpoints(ctx, id)
	if err != nil {
		return err
	}
	size := int64(0)
	if len(cps) > 0 {
		size = SignedSize(cps[len(cps)-1])
	}
	bw := bufio.NewWriter(w)
	line := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		bw.Write(b)
		return bw.WriteByte('\n')
	}
	if err := line(consentlog.Header{Log: consentlog.LogFormat, Campaign: id}); err != nil {
		return fmt.Errorf("export ledger %s: %w", id, err)
	}
	var n int64
	next := 0
	err = s.RawLedger(ctx, id, size, func(raw []byte, _ string) error {
		bw.Write(raw)
		bw.WriteByte('\n')
		n++
		for next < len(cps) && SignedSize(cps[next]) <= n {
			if SignedSize(cps[next]) == n {
				if err := line(consentlog.CheckpointLine{Checkpoint: cps[next]}); err != nil {
					return err
				}
			}
			next++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("export ledger %s: %w", id, err)
	}
	if n != size {
		return fmt.Errorf("export ledger %s: the log holds %d records, its checkpoint signs %d", id, n, size)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export ledger %s: %w", id, err)
	}
	return nil
}

// OldKindError: the file is a ledger of the old kind, an unsigned hash
// chain. Err is nil when its chain and trailer are intact.
type OldKindError struct {
	Name    string
	Records int
	Err     error
}

func (e *OldKindError) Error() string {
	if e.Err != nil {
		msg := e.Err.Error()
		var re *repermit.Error
		if errors.As(e.Err, &re) {
			msg = re.Message
		}
		return msg + " (a ledger of the old kind: unsigned hash chain, from a campaign launched before the consent log)"
	}
	return fmt.Sprintf("%s: a ledger of the old kind (unsigned hash chain, from a campaign launched before the consent log): chain and trailer intact over %d records, but nothing in it is signed, so whoever holds the file can rewrite it and recompute every hash undetected; it proves nothing against its holder", e.Name, e.Records)
}

// Code makes the old kind a bad input for exit codes.
func (e *OldKindError) Code() string { return repermit.EINVALID }

// Verify checks an exported ledger: a consent log against the public key
// v (and the witnessed checkpoints, if any), or, for a file of the old
// kind, its chain, reporting *OldKindError either way.
func Verify(r io.Reader, name string, v note.Verifier, witnessed []consentlog.Checkpoint) (consentlog.Summary, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	first, _ := br.Peek(4096)
	if line, _, _ := bytes.Cut(first, []byte("\n")); consentlog.IsLogHeader(line) || bytes.Contains(line, []byte(`"subject":`)) {
		// A consent log, or the record of one where its header belongs.
		return consentlog.VerifyLog(br, name, v, witnessed)
	}
	n, err := verifyLegacy(br, name)
	return consentlog.Summary{Records: int64(n)}, &OldKindError{Name: name, Records: n, Err: err}
}

// ReadWitness reads a witness file: signed checkpoints as JSON lines
// {"checkpoint":…}, each checked against v.
func ReadWitness(r io.Reader, name string, v note.Verifier) ([]consentlog.Checkpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	var out []consentlog.Checkpoint
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var cl consentlog.CheckpointLine
		if err := json.Unmarshal(sc.Bytes(), &cl); err != nil {
			return nil, repermit.Errorf(repermit.EINVALID, "%s:%d: not a checkpoint line: %v", name, line, err)
		}
		cp, err := consentlog.Open(cl.Checkpoint, v)
		if err != nil {
			return nil, repermit.Errorf(repermit.EINVALID, "%s:%d: %v", name, line, err)
		}
		out = append(out, cp)
	}
	if err := sc.Err(); err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "%s:%d: %v", name, line+1, err)
	}
	return out, nil
}

var errEnough = errors.New("enough records")
