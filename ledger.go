package repermit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// ConsentRecord is one answer in a campaign's consent log, a Merkle-tree
// log (golang.org/x/mod/sumdb/tlog) whose signed checkpoints commit to
// every record before them. A record is a leaf: its bytes are exactly
// Canonical(), and its leaf hash is tlog.RecordHash of those bytes.
//
// It names the person by Subject, a keyed hash of the normalized address
// (see consentlog.Subject), never by the address itself, so the log can
// leave the building and outlive the recipient data, and a lookup by
// address still finds the records.
type ConsentRecord struct {
	Seq       int64  `json:"seq"` // 1-based position in the log
	Campaign  string `json:"campaign"`
	Recipient int64  `json:"recipient"`
	Subject   string `json:"subject"` // keyed hash of the normalized address, lower-case hex
	Answer    State  `json:"answer"`  // confirmed, declined or unsubscribed
	// TopicsBefore is what a confirmed recipient had chosen before this
	// record; Topics is the choice after it.
	TopicsBefore []string  `json:"topics_before,omitempty"`
	Topics       []string  `json:"topics,omitempty"`
	At           time.Time `json:"at"` // UTC, millisecond precision
	IP           string    `json:"ip,omitempty"`
	UserAgent    string    `json:"user_agent,omitempty"`
	// Wording is the lower-case hex SHA-256 of the page the answer was
	// given to; the page itself is kept once per campaign under that hash.
	Wording string `json:"wording,omitempty"`
}

// recordKeys are the keys a canonical record may have, spelled exactly.
var recordKeys = []string{"seq", "campaign", "recipient", "subject", "answer", "topics_before", "topics", "at", "ip", "user_agent", "wording"}

// Canonical returns the record's one valid encoding: encoding/json's
// output for the struct (fields in declaration order, empty optional fields
// left out, the time in UTC RFC 3339 with milliseconds at most).
func (r ConsentRecord) Canonical() []byte {
	r.At = r.At.UTC()
	if b, ok := r.appendPlain(make([]byte, 0, 512)); ok {
		return b
	}
	b, err := json.Marshal(r)
	if err != nil {
		// Strings, ints and a UTC time cannot fail to marshal.
		panic(fmt.Sprintf("marshal consent record: %v", err))
	}
	return b
}

// appendPlain appends what json.Marshal writes for r (At in UTC) when
// every string of r is printable ASCII that JSON writes as it is (no
// quote, backslash, '<', '>' or '&') and At's year is 0–9999, as for
// nearly every answer; ok is false otherwise, and Canonical leaves r to
// json.Marshal, whose reflection took 1.2 % of the CPU of bench web's
// confirm phase (3.5 % when the record was encoded twice).
// TestCanonicalIsJSONMarshal holds the two to the same bytes.
func (r *ConsentRecord) appendPlain(b []byte) ([]byte, bool) {
	if y := r.At.Year(); y < 0 || y > 9999 {
		return nil, false
	}
	for _, s := range [...]string{r.Campaign, r.Subject, string(r.Answer), r.IP, r.UserAgent, r.Wording} {
		if !plainJSON(s) {
			return nil, false
		}
	}
	for _, ts := range [...][]string{r.TopicsBefore, r.Topics} {
		for _, s := range ts {
			if !plainJSON(s) {
				return nil, false
			}
		}
	}
	str := func(b []byte, key, s string) []byte {
		b = append(b, key...)
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	list := func(b []byte, key string, ss []string) []byte {
		b = append(b, key...)
		b = append(b, '[')
		for i, s := range ss {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, "", s)
		}
		return append(b, ']')
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = str(b, `,"campaign":`, r.Campaign)
	b = append(b, `,"recipient":`...)
	b = strconv.AppendInt(b, r.Recipient, 10)
	b = str(b, `,"subject":`, r.Subject)
	b = str(b, `,"answer":`, string(r.Answer))
	if len(r.TopicsBefore) > 0 {
		b = list(b, `,"topics_before":`, r.TopicsBefore)
	}
	if len(r.Topics) > 0 {
		b = list(b, `,"topics":`, r.Topics)
	}
	// time.Time's MarshalJSON: RFC 3339 with the fraction's trailing
	// zeros cut, for years 0–9999 (checked above).
	b = append(b, `,"at":"`...)
	b = r.At.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if r.IP != "" {
		b = str(b, `,"ip":`, r.IP)
	}
	if r.UserAgent != "" {
		b = str(b, `,"user_agent":`, r.UserAgent)
	}
	if r.Wording != "" {
		b = str(b, `,"wording":`, r.Wording)
	}
	return append(b, '}'), true
}

// plainJSON reports whether encoding/json writes s between its quotes
// unchanged.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// LeafHash is the record's hash as a leaf of the log.
func (r ConsentRecord) LeafHash() tlog.Hash { return tlog.RecordHash(r.Canonical()) }

// ParseRecord reads one record strictly: one JSON object with only known
// keys, in lower case, none twice, exactly in canonical form. Any other
// encoding of the same values is refused too, so that every reader of a
// log sees the same answer and the signed leaf hashes cover what is read.
func ParseRecord(b []byte) (ConsentRecord, error) {
	if err := CheckKeys(b, recordKeys); err != nil {
		return ConsentRecord{}, err
	}
	var r ConsentRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return ConsentRecord{}, fmt.Errorf("not a consent record: %w", err)
	}
	if dec.More() {
		return ConsentRecord{}, fmt.Errorf("not a consent record: data after the object")
	}
	switch r.Answer {
	case StateConfirmed, StateDeclined, StateUnsubscribed:
	default:
		return ConsentRecord{}, fmt.Errorf("answer %q is not confirmed, declined or unsubscribed", r.Answer)
	}
	if !bytes.Equal(r.Canonical(), b) {
		return ConsentRecord{}, fmt.Errorf("record is not in canonical form (key order, spacing, escapes, time format)")
	}
	return r, nil
}

// CheckKeys checks that b is one JSON object whose keys are all in allowed,
// spelled exactly, and none twice. encoding/json alone takes the last of
// duplicated keys and matches keys case-insensitively, so two parsers
// could read two different answers from one line.
func CheckKeys(b []byte, allowed []string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not a consent record: %w", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if !slices.Contains(allowed, key) {
			return fmt.Errorf("unknown key %q", key)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("not a consent record: %w", err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("not a consent record: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("not a consent record: data after the object")
	}
	return nil
}

// LegacyConsentRecord is a record of the first kind of ledger, written by
// campaigns launched before the consent log: an unsigned SHA-256 chain.
// It is kept so that those campaigns can go on answering and their
// exports can still be checked, and so that verify-ledger can say what
// such a file does and does not prove.
type LegacyConsentRecord struct {
	Seq           int64     `json:"seq"`
	Campaign      string    `json:"campaign"`
	Recipient     int64     `json:"recipient"`
	Answer        State     `json:"answer"`
	Topics        []string  `json:"topics,omitempty"`
	TopicsBefore  []string  `json:"topics_before,omitempty"`
	At            time.Time `json:"at"`
	IP            string    `json:"ip,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
	WordingSHA256 string    `json:"wording_sha256,omitempty"`
	Prev          string    `json:"prev"`
	Hash          string    `json:"hash"`
}

// ComputeHash returns the SHA-256 of the legacy record's JSON with Hash
// left empty.
func (r LegacyConsentRecord) ComputeHash() string {
	r.Hash = ""
	r.At = r.At.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("marshal consent record: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// StoredRecordHash names a stored record by hash, in lower-case hex: for
// the consent log its leaf hash (what inclusion proofs prove), for a
// ledger of the old kind the chain hash it carries.
func StoredRecordHash(raw []byte) string {
	if bytes.Contains(raw, []byte(`"prev":`)) {
		var old LegacyConsentRecord
		if json.Unmarshal(raw, &old) == nil {
			return old.Hash
		}
	}
	h := tlog.RecordHash(raw)
	return hex.EncodeToString(h[:])
}

// DecodeStoredRecord reads a stored record of either kind.
func DecodeStoredRecord(raw []byte) (ConsentRecord, error) {
	if bytes.Contains(raw, []byte(`"prev":`)) {
		var old LegacyConsentRecord
		if err := json.Unmarshal(raw, &old); err != nil {
			return ConsentRecord{}, err
		}
		return ConsentRecord{Seq: old.Seq, Campaign: old.Campaign, Recipient: old.Recipient, Answer: old.Answer,
			TopicsBefore: old.TopicsBefore, Topics: old.Topics, At: old.At, IP: old.IP, UserAgent: old.UserAgent,
			Wording: old.WordingSHA256}, nil
	}
	var r ConsentRecord
	err := json.Unmarshal(raw, &r)
	return r, err
}

// CheckSequence reports the first record whose Seq is not its 1-based
// position: a log read back whole has neither gaps nor repeats. (Edits
// are found by the tree hashes, consentlog.VerifyLog.)
func CheckSequence(records []ConsentRecord) error {
	for i, r := range records {
		if r.Seq != int64(i+1) {
			return Errorf(EINVALID, "record %d: sequence %d, want %d (removed or reordered record)", i+1, r.Seq, i+1)
		}
	}
	return nil
}
