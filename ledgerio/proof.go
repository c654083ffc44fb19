package ledgerio

import (
	"context"
	"fmt"
	"sort"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/recipients"
	"github.com/repermit/repermit/redisstore"
)

// ProofResult is a person's consent history as a bundle, and the campaigns
// that could not be searched by address (launched before the consent log).
type ProofResult struct {
	Bundle *consentlog.Bundle
	Legacy []string
}

// Proof collects the consent records of address in campaign (all
// campaigns when ""), with inclusion proofs up to each campaign's newest
// checkpoint (signed now with signer when the newest records have none yet;
// signer may be nil when every record is covered), and the wordings they
// point to. It needs no recipient data: after retention only the log, the
// checkpoints and the wordings are left, and they suffice.
func Proof(ctx context.Context, s *redisstore.Store, address, campaign string, signer note.Signer, now time.Time) (*ProofResult, error) {
	addr, err := recipients.Normalize(address)
	if err != nil {
		return nil, err
	}
	key, err := s.SubjectKey(ctx)
	if err != nil {
		return nil, err
	}
	subject, opening := consentlog.Subject(key, addr)
	b := &consentlog.Bundle{Format: consentlog.BundleFormat, Address: addr, Opening: opening, Subject: subject,
		Campaigns: []consentlog.CampaignProof{}, Wordings: []consentlog.Wording{}}
	res := &ProofResult{Bundle: b}
	ids := []string{campaign}
	if campaign == "" {
		if ids, err = s.Campaigns(ctx); err != nil {
			return nil, err
		}
	}
	sort.Strings(ids)
	wordings := map[string]bool{}
	for _, id := range ids {
		isLog, err := s.LedgerIsLog(ctx, id)
		if err != nil {
			return nil, err
		}
		if !isLog {
			res.Legacy = append(res.Legacy, id)
			continue
		}
		raws, err := s.RecordsOf(ctx, id, subject)
		if err != nil {
			return nil, err
		}
		if len(raws) == 0 {
			continue
		}
		signed, _, err := Checkpoint(ctx, s, id, signer, now, 0)
		if err != nil {
			return nil, err
		}
		size := SignedSize(signed)
		cp := consentlog.CampaignProof{Campaign: id, Checkpoint: signed}
		for _, raw := range raws {
			rec, err := repermit.ParseRecord(raw)
			if err != nil {
				return nil, fmt.Errorf("proof: campaign %s: stored record: %w", id, err)
			}
			if rec.Seq > size {
				continue // appended after the checkpoint was read
			}
			p, err := tlog.ProveRecord(size, rec.Seq-1, s.HashReader(ctx, id))
			if err != nil {
				return nil, fmt.Errorf("proof: campaign %s record %d: %w", id, rec.Seq, err)
			}
			cp.Records = append(cp.Records, consentlog.ProvenRecord{Record: string(raw), Proof: consentlog.ProofHashes(p)})
			if rec.Wording != "" && !wordings[rec.Wording] {
				text, ok, err := s.Wording(ctx, id, rec.Wording)
				if err != nil {
					return nil, err
				}
				if ok {
					wordings[rec.Wording] = true
					b.Wordings = append(b.Wordings, consentlog.Wording{SHA256: rec.Wording, Text: text})
				}
			}
		}
		if len(cp.Records) > 0 {
			first, _ := repermit.ParseRecord([]byte(cp.Records[0].Record))
			if cp.Mail, err = mailWordings(ctx, s, id, first.Recipient); err != nil {
				return nil, err
			}
			b.Campaigns = append(b.Campaigns, cp)
		}
	}
	sort.Slice(b.Wordings, func(i, j int) bool { return b.Wordings[i].SHA256 < b.Wordings[j].SHA256 })
	return res, nil
}

// mailWordings returns the wordings of the mails campaign id sent its
// recipient idx, by hash: those in their locale, with or without their
// name as they were mailed, and of the steps they were mailed while they
// have not answered (an answer's state does not keep the count). Once the
// recipient's data is gone (retention purged it, or an unsubscribe or
// bounce erased the address with the locale and name) nobody knows that
// any more, and it returns every mail wording the campaign sent.
func mailWordings(ctx context.Context, s *redisstore.Store, id string, idx int64) ([]consentlog.Wording, error) {
	sent, err := s.MailWordings(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := s.Recipient(ctx, id, idx)
	if err != nil && repermit.ErrorCode(err) != repermit.ENOTFOUND {
		return nil, err
	}
	known := err == nil && r.Email != ""
	var out []consentlog.Wording
	seen := map[string]bool{}
	for _, w := range sent {
		if known && (w.Locale != r.Locale || w.Named != (r.Name != "") || (r.Step > 0 && w.Step >= r.Step)) {
			continue
		}
		if seen[w.SHA256] {
			continue
		}
		text, ok, err := s.Wording(ctx, id, w.SHA256)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("proof: campaign %s: mail wording %s noted as sent but not kept", id, w.SHA256)
		}
		seen[w.SHA256] = true
		out = append(out, consentlog.Wording{SHA256: w.SHA256, Text: text})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SHA256 < out[j].SHA256 })
	return out, nil
}
