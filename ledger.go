package repermit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// ConsentRecord is one answer in a campaign's append-only ledger. Records
// are hash-chained: Hash covers every other field including Prev, the Hash of
// the record before it, so an edited, removed or reordered record breaks the
// chain from that point on.
type ConsentRecord struct {
	Seq       int64    `json:"seq"` // 1-based position in the ledger
	Campaign  string   `json:"campaign"`
	Recipient int64    `json:"recipient"`
	Answer    State    `json:"answer"` // confirmed, declined or unsubscribed
	Topics    []string `json:"topics,omitempty"`
	// TopicsBefore is set when a confirmed recipient changed topics: what
	// they had chosen before this record (Topics is the choice after it).
	TopicsBefore  []string  `json:"topics_before,omitempty"`
	At            time.Time `json:"at"`
	IP            string    `json:"ip,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
	WordingSHA256 string    `json:"wording_sha256,omitempty"`
	Prev          string    `json:"prev"`
	Hash          string    `json:"hash"`
}

// ComputeHash returns the SHA-256 of the record's canonical JSON form with
// Hash left empty. encoding/json writes struct fields in declaration order,
// which makes the form canonical.
func (r ConsentRecord) ComputeHash() string {
	r.Hash = ""
	r.At = r.At.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		// A struct of strings, ints and a time cannot fail to marshal.
		panic(fmt.Sprintf("marshal consent record: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// VerifyLedger checks a ledger in order: each record's hash, its link to the
// previous record and its sequence number. It names the first record that
// does not fit.
func VerifyLedger(records []ConsentRecord) error {
	prev := ""
	for i, r := range records {
		if r.Seq != int64(i+1) {
			return Errorf(EINVALID, "record %d: sequence %d, want %d (removed or reordered record)", i+1, r.Seq, i+1)
		}
		if r.Prev != prev {
			return Errorf(EINVALID, "record %d: previous hash does not match record %d (removed or reordered record)", i+1, i)
		}
		if h := r.ComputeHash(); h != r.Hash {
			return Errorf(EINVALID, "record %d: hash mismatch (edited record)", i+1)
		}
		prev = r.Hash
	}
	return nil
}
