package consentlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/repermit/repermit"
)

// BundleFormat is a proof bundle's "format" value.
const BundleFormat = "repermit consent proof 1"

// Bundle is a self-contained proof of one person's consent history: their
// records in every campaign, each with its inclusion proof in that
// campaign's log up to a signed checkpoint, and the wordings the records
// point to. VerifyBundle checks it with the public key alone.
type Bundle struct {
	Format string `json:"format"`
	// Address is the normalized address, Opening its key in Subject: they
	// show that Subject, which the records carry, is this address's.
	Address   string          `json:"address"`
	Opening   string          `json:"opening"`
	Subject   string          `json:"subject"`
	Campaigns []CampaignProof `json:"campaigns"` // by campaign id
	Wordings  []Wording       `json:"wordings"`  // by hash
}

// CampaignProof is the part of a bundle from one campaign's log.
type CampaignProof struct {
	Campaign   string         `json:"campaign"`
	Checkpoint string         `json:"checkpoint"` // signed note
	Records    []ProvenRecord `json:"records"`    // in log order
	// Mail are the wordings of the mails the campaign sent this person
	// (all the campaign sent, when their recipient data is purged), by
	// hash. Each text names its campaign, mail and locale; the log does
	// not point to them (the record format predates them), so they are
	// checked against their hashes and campaign only.
	Mail []Wording `json:"mail,omitempty"`
}

// ProvenRecord is a record as the log holds it (canonical JSON) and the
// hashes (base64) that lead from its leaf to the checkpoint's tree hash.
type ProvenRecord struct {
	Record string   `json:"record"`
	Proof  []string `json:"proof"`
}

// Wording is a page a record's answer was given to, or the template of a
// mail sent, verbatim.
type Wording struct {
	SHA256 string `json:"sha256"`
	Text   string `json:"text"`
}

// Marshal writes the bundle in its one canonical form.
func (b *Bundle) Marshal() ([]byte, error) {
	out, err := json.MarshalIndent(b, "", " ")
	if err != nil {
		return nil, fmt.Errorf("proof bundle: %w", err)
	}
	return append(out, '\n'), nil
}

// ProofHashes encodes an inclusion proof for a bundle.
func ProofHashes(p tlog.RecordProof) []string {
	out := make([]string, len(p))
	for i, h := range p {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// MailWordingHeader opens a mail wording's text; the next line names its
// campaign (mailer.MailWording writes them).
const MailWordingHeader = "repermit mail wording"

// Proven is one verified record of a bundle.
type Proven struct {
	Record     repermit.ConsentRecord
	Checkpoint Checkpoint
	Wording    *Wording // nil when the bundle holds no text for it
}

// VerifyBundle checks a bundle with the public key v alone: its encoding
// is the canonical one (so no byte of it can change unnoticed), each
// checkpoint is signed by v, each record is canonical, is about Subject,
// and is included in its campaign's checkpoint, Subject belongs to
// Address, each wording hashes to the hash its records name, and each mail
// wording hashes to its hash and names its campaign. It returns the
// records in bundle order.
func VerifyBundle(data []byte, v note.Verifier) ([]Proven, *Bundle, error) {
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, nil, fmt.Errorf("not a proof bundle: %w", err)
	}
	if again, err := b.Marshal(); err != nil || !bytes.Equal(again, data) {
		return nil, nil, errors.New("proof bundle is not in canonical form (altered, or not written by repermit proof)")
	}
	if b.Format != BundleFormat {
		return nil, nil, fmt.Errorf("proof bundle format %q, want %q", b.Format, BundleFormat)
	}
	if !CheckSubject(b.Subject, b.Opening, b.Address) {
		return nil, nil, fmt.Errorf("subject %s is not the keyed hash of %q under the opening given", b.Subject, b.Address)
	}
	wordings := map[string]*Wording{}
	for i := range b.Wordings {
		w := &b.Wordings[i]
		sum := sha256.Sum256([]byte(w.Text))
		if hex.EncodeToString(sum[:]) != w.SHA256 {
			return nil, nil, fmt.Errorf("wording %d: text does not hash to %s", i+1, w.SHA256)
		}
		if i > 0 && b.Wordings[i-1].SHA256 >= w.SHA256 {
			return nil, nil, fmt.Errorf("wording %d: not in hash order", i+1)
		}
		wordings[w.SHA256] = w
	}
	used := map[string]bool{}
	var out []Proven
	for i, cp := range b.Campaigns {
		if i > 0 && b.Campaigns[i-1].Campaign >= cp.Campaign {
			return nil, nil, fmt.Errorf("campaign %q: not in order", cp.Campaign)
		}
		head, err := Open(cp.Checkpoint, v)
		if err != nil {
			return nil, nil, fmt.Errorf("campaign %s: %w", cp.Campaign, err)
		}
		if head.Campaign != cp.Campaign {
			return nil, nil, fmt.Errorf("campaign %s: checkpoint is of campaign %s", cp.Campaign, head.Campaign)
		}
		if len(cp.Records) == 0 {
			return nil, nil, fmt.Errorf("campaign %s: no records", cp.Campaign)
		}
		for k, w := range cp.Mail {
			where := fmt.Sprintf("campaign %s, mail wording %d", cp.Campaign, k+1)
			sum := sha256.Sum256([]byte(w.Text))
			switch {
			case hex.EncodeToString(sum[:]) != w.SHA256:
				return nil, nil, fmt.Errorf("%s: text does not hash to %s", where, w.SHA256)
			case k > 0 && cp.Mail[k-1].SHA256 >= w.SHA256:
				return nil, nil, fmt.Errorf("%s: not in hash order", where)
			case !strings.HasPrefix(w.Text, MailWordingHeader+"\ncampaign: "+cp.Campaign+"\n"):
				return nil, nil, fmt.Errorf("%s: not a mail wording of campaign %s", where, cp.Campaign)
			}
		}
		var prevSeq int64
		for j, pr := range cp.Records {
			where := fmt.Sprintf("campaign %s, record %d", cp.Campaign, j+1)
			rec, err := repermit.ParseRecord([]byte(pr.Record))
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			switch {
			case rec.Campaign != cp.Campaign:
				return nil, nil, fmt.Errorf("%s: record of campaign %s", where, rec.Campaign)
			case rec.Subject != b.Subject:
				return nil, nil, fmt.Errorf("%s: record about another subject", where)
			case rec.Seq <= prevSeq || rec.Seq > head.Size:
				return nil, nil, fmt.Errorf("%s: sequence %d out of order or beyond the checkpoint's %d", where, rec.Seq, head.Size)
			}
			prevSeq = rec.Seq
			proof := make(tlog.RecordProof, len(pr.Proof))
			for k, s := range pr.Proof {
				raw, err := base64.StdEncoding.DecodeString(s)
				if err != nil || len(raw) != tlog.HashSize || base64.StdEncoding.EncodeToString(raw) != s {
					return nil, nil, fmt.Errorf("%s: proof hash %d is not canonical base64 SHA-256", where, k+1)
				}
				copy(proof[k][:], raw)
			}
			if err := tlog.CheckRecord(proof, head.Size, head.Hash, rec.Seq-1, tlog.RecordHash([]byte(pr.Record))); err != nil {
				return nil, nil, fmt.Errorf("%s: not in the log the checkpoint signs: %w", where, err)
			}
			p := Proven{Record: rec, Checkpoint: head}
			if rec.Wording != "" {
				p.Wording = wordings[rec.Wording]
				used[rec.Wording] = true
			}
			out = append(out, p)
		}
	}
	for _, w := range b.Wordings {
		if !used[w.SHA256] {
			return nil, nil, fmt.Errorf("wording %s: no record points to it", w.SHA256)
		}
	}
	return out, &b, nil
}
