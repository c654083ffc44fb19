package consentlog

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed statement "campaign C's log had Size records
// whose Merkle tree hash is Hash, at Time". Its text follows the shape of
// the checksum database's tree notes (origin, size, base64 hash) with the
// time as a last line:
//
//	repermit consent log newsletter-2026
//	1234
//	<base64 tree hash>
//	time 2026-12-01T09:00:00.000Z
type Checkpoint struct {
	Campaign string
	Size     int64
	Hash     tlog.Hash
	Time     time.Time
}

const originPrefix = "repermit consent log "

// timeLayout writes checkpoint times to the millisecond, always with three
// digits, so that one time has one spelling.
const timeLayout = "2006-01-02T15:04:05.000Z"

// Text is the checkpoint's note text, ending in a newline.
func (c Checkpoint) Text() string {
	return originPrefix + c.Campaign + "\n" + strconv.FormatInt(c.Size, 10) + "\n" +
		base64.StdEncoding.EncodeToString(c.Hash[:]) + "\ntime " + c.Time.UTC().Format(timeLayout) + "\n"
}

// ParseCheckpoint reads a checkpoint text strictly: the only accepted
// text is the one Text writes for the values read.
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 5 || lines[4] != "" {
		return Checkpoint{}, errors.New("checkpoint text is not four lines")
	}
	var c Checkpoint
	var ok bool
	if c.Campaign, ok = strings.CutPrefix(lines[0], originPrefix); !ok || c.Campaign == "" {
		return Checkpoint{}, fmt.Errorf("checkpoint origin %q is not %q and a campaign", lines[0], originPrefix)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 {
		return Checkpoint{}, fmt.Errorf("checkpoint size %q is not a number", lines[1])
	}
	c.Size = n
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint hash %q is not a base64 SHA-256", lines[2])
	}
	copy(c.Hash[:], h)
	ts, ok := strings.CutPrefix(lines[3], "time ")
	if !ok {
		return Checkpoint{}, fmt.Errorf("checkpoint line 4 %q is not a time", lines[3])
	}
	if c.Time, err = time.Parse(timeLayout, ts); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint time %q: %w", ts, err)
	}
	if c.Text() != text {
		return Checkpoint{}, errors.New("checkpoint text is not in canonical form")
	}
	return c, nil
}

// Sign returns the checkpoint as a signed note.
func Sign(c Checkpoint, s note.Signer) (string, error) {
	msg, err := note.Sign(&note.Note{Text: c.Text()}, s)
	if err != nil {
		return "", fmt.Errorf("sign checkpoint: %w", err)
	}
	return string(msg), nil
}

// Open checks a signed checkpoint: one signature, by v, valid, spelled
// as note.Sign spells it, over a canonical checkpoint text.
func Open(msg string, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open([]byte(msg), note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 0 {
		return Checkpoint{}, fmt.Errorf("checkpoint carries %d signatures and %d unknown ones, want exactly one", len(n.Sigs), len(n.UnverifiedSigs))
	}
	sig := n.Sigs[0]
	raw, err := base64.StdEncoding.DecodeString(sig.Base64)
	if err != nil || base64.StdEncoding.EncodeToString(raw) != sig.Base64 {
		return Checkpoint{}, errors.New("checkpoint signature is not in canonical base64")
	}
	if msg != n.Text+"\n\u2014 "+sig.Name+" "+sig.Base64+"\n" {
		return Checkpoint{}, errors.New("signed checkpoint is not in canonical form")
	}
	return ParseCheckpoint(n.Text)
}

// NewSigner reads REPERMIT_LEDGER_KEY (a note signer key, "PRIVATE+KEY+…").
func NewSigner(skey string) (note.Signer, error) {
	s, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, fmt.Errorf("ledger key: %w (make one with: repermit ledger-key NAME)", err)
	}
	return s, nil
}

// NewVerifier reads a public key as `repermit ledger-key` prints it.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return v, nil
}
