// Package consentlog is the format of repermit's consent log: who a
// record is about (Subject), the signed checkpoints, the exported log file
// and the per-person proof bundle, with their strict verifiers. It speaks
// no Redis; redisstore keeps the log, ledgerio writes files from it.
//
// The log is a Merkle tree built with golang.org/x/mod/sumdb/tlog, the
// code behind the Go checksum database (sum.golang.org), and checkpoints
// are signed notes (golang.org/x/mod/sumdb/note, Ed25519).
package consentlog

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// Subject names a person in the log without the address: subject is
// HMAC-SHA256(opening, address) and opening is HMAC-SHA256(key, address)
// under the deployment's secret key. Whoever holds the key finds a
// person's records from the address (lookup after retention, Art. 15);
// whoever holds only the log learns nothing of the addresses in it, and
// cannot test guesses. A proof bundle carries the address and its opening,
// so a third party can check that the records are about that address,
// without learning the key or anyone else's opening.
func Subject(key []byte, normalized string) (subject, opening string) {
	op := mac(key, openingLabel+normalized)
	return hex.EncodeToString(mac(op, normalized)), hex.EncodeToString(op)
}

const openingLabel = "repermit consent subject opening\x00"

// Subjects computes Subject's subject under one key, keeping the keyed
// hash state between calls: every answer and every expired recipient
// needs one, and the two hmac.New of Subject took 3 % of the CPU of
// bench web's confirm phase, most of it setting up the keys again and
// allocating. It is safe for concurrent use.
type Subjects struct {
	work sync.Pool // of *subjectWork
}

type subjectWork struct {
	opening hash.Hash // HMAC-SHA256 under the key
	sha     hash.Hash // SHA-256, for the HMAC under the opening
	msg     []byte
	pad     [sha256.BlockSize]byte
	op, in  [sha256.Size]byte
}

// NewSubjects returns the subjects of key; it keeps a copy of key.
func NewSubjects(key []byte) *Subjects {
	key = bytes.Clone(key)
	s := &Subjects{}
	s.work.New = func() any { return &subjectWork{opening: hmac.New(sha256.New, key), sha: sha256.New()} }
	return s
}

// Of returns the subject of the normalized address, as Subject does.
func (s *Subjects) Of(normalized string) string {
	w := s.work.Get().(*subjectWork)
	defer func() {
		// The pooled state must not keep the last address, nor what
		// was derived from it, while it waits for the next answer.
		clear(w.msg)
		clear(w.pad[:])
		clear(w.op[:])
		clear(w.in[:])
		w.opening.Reset()
		w.sha.Reset()
		s.work.Put(w)
	}()
	w.msg = append(append(w.msg[:0], openingLabel...), normalized...)
	w.opening.Reset()
	w.opening.Write(w.msg)
	op := w.opening.Sum(w.op[:0])
	// HMAC-SHA256 under the opening (RFC 2104), written out so that its
	// hash is reused: the opening is shorter than a block, so it is the
	// padded key as it is.
	msg := w.msg[len(openingLabel):]
	w.sha.Reset()
	w.sha.Write(w.padded(op, 0x36))
	w.sha.Write(msg)
	in := w.sha.Sum(w.in[:0])
	w.sha.Reset()
	w.sha.Write(w.padded(op, 0x5c))
	w.sha.Write(in)
	return hex.EncodeToString(w.sha.Sum(w.op[:0]))
}

// padded returns key, of at most a block, zero-padded to a block and
// XORed with b.
func (w *subjectWork) padded(key []byte, b byte) []byte {
	for i := range w.pad {
		w.pad[i] = b
	}
	for i, k := range key {
		w.pad[i] ^= k
	}
	return w.pad[:]
}

// CheckSubject reports whether subject is the keyed hash of normalized
// under opening. Both hex strings must be lower-case, as Subject writes
// them, so that one subject has one spelling.
func CheckSubject(subject, opening, normalized string) bool {
	op, err := hex.DecodeString(opening)
	if err != nil || len(op) != sha256.Size || hex.EncodeToString(op) != opening {
		return false
	}
	return hex.EncodeToString(mac(op, normalized)) == subject
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
