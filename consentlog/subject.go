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
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
	op := mac(key, "repermit consent subject opening\x00"+normalized)
	return hex.EncodeToString(mac(op, normalized)), hex.EncodeToString(op)
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
