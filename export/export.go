// Package export writes what marketing ops take away from a campaign:
// the confirmed recipients with their proof, and the suppression entries.
// Every CSV cell is neutralised against formula injection (see CSVWriter).
package export

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// Store is what the exports read of a campaign, declared here so that
// their tests can hand them a fake; *redisstore.Store implements it.
type Store interface {
	Campaign(ctx context.Context, id string) (*repermit.Campaign, error)
	Imported(ctx context.Context, id string) (int64, error)
	// Bucket returns the recipients of bucket b, redisstore.BucketSize
	// indexes each; the exports walk redisstore.Buckets(Imported) of them.
	Bucket(ctx context.Context, id string, b int64) ([]*repermit.Recipient, error)
	RawLedger(ctx context.Context, id string, max int64, fn func(raw []byte, streamID string) error) error
	DrainSuppression(ctx context.Context, id string) error
	Suppressions(ctx context.Context, id string, fn func(redisstore.SuppressionEntry) error) error
}

var _ Store = (*redisstore.Store)(nil)

// ConfirmedHeader is the header of the confirmed export. email, name and
// attributes are the columns listmonk's importer reads (attributes holds
// the rest as JSON); spreadsheet users and Mailchimp's column mapper get the
// same facts as plain columns after them.
func ConfirmedHeader() []string {
	return []string{"email", "name", "attributes", "locale", "topics", "confirmed_at", "consent_record_hash"}
}

// Confirmed writes one CSV row per confirmed recipient of campaign id.
func Confirmed(ctx context.Context, w io.Writer, st Store, id string) error {
	if _, err := st.Campaign(ctx, id); err != nil {
		return err
	}
	// A confirmed recipient points at its consent record by stream id; the
	// proof a user can check is the record's hash.
	hashes := make(map[string]string)
	if err := st.RawLedger(ctx, id, -1, func(raw []byte, streamID string) error {
		hashes[streamID] = repermit.StoredRecordHash(raw)
		return nil
	}); err != nil {
		return err
	}
	n, err := st.Imported(ctx, id)
	if err != nil {
		return err
	}
	cw := NewCSVWriter(w)
	if err := cw.Write(ConfirmedHeader()); err != nil {
		return fmt.Errorf("export confirmed %s: %w", id, err)
	}
	for b := int64(0); b < redisstore.Buckets(n); b++ {
		rs, err := st.Bucket(ctx, id, b)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.State != repermit.StateConfirmed || r.Email == "" {
				// No address: the retention ended, only its hash is kept.
				continue
			}
			at := r.AnsweredAt.UTC().Format(time.RFC3339)
			attrs := map[string]any{"confirmed_at": at, "consent_record_hash": hashes[r.LedgerID], "repermit_campaign": id}
			if r.Locale != "" {
				attrs["locale"] = r.Locale
			}
			if len(r.Topics) > 0 {
				attrs["topics"] = r.Topics
			}
			for k, v := range r.Extra {
				if _, taken := attrs[k]; !taken {
					attrs[k] = v
				}
			}
			js, err := json.Marshal(attrs)
			if err != nil {
				return fmt.Errorf("export confirmed %s: %w", id, err)
			}
			if err := cw.Write([]string{r.Email, r.Name, string(js), r.Locale, strings.Join(r.Topics, ";"), at, hashes[r.LedgerID]}); err != nil {
				return fmt.Errorf("export confirmed %s: %w", id, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return cw.Flush()
}

// UnreachedHeader is the header of the unreached export: the columns a
// campaign's recipients CSV reads (email, name, locale), then the extra
// columns as JSON, so the file can go straight into a later campaign.
// Each call returns a fresh slice.
func UnreachedHeader() []string { return []string{"email", "name", "locale", "attributes"} }

// Unreached writes one CSV row per recipient of campaign id whom the
// initial mail never reached before the deadline: never asked, so neither
// expired nor suppressed, and theirs to ask in a later campaign.
func Unreached(ctx context.Context, w io.Writer, st Store, id string) error {
	if _, err := st.Campaign(ctx, id); err != nil {
		return err
	}
	n, err := st.Imported(ctx, id)
	if err != nil {
		return err
	}
	cw := NewCSVWriter(w)
	if err := cw.Write(UnreachedHeader()); err != nil {
		return fmt.Errorf("export unreached %s: %w", id, err)
	}
	for b := int64(0); b < redisstore.Buckets(n); b++ {
		rs, err := st.Bucket(ctx, id, b)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.State != repermit.StateUnreached {
				continue
			}
			attrs := "{}"
			if len(r.Extra) > 0 {
				js, err := json.Marshal(r.Extra)
				if err != nil {
					return fmt.Errorf("export unreached %s: %w", id, err)
				}
				attrs = string(js)
			}
			if err := cw.Write([]string{r.Email, r.Name, r.Locale, attrs}); err != nil {
				return fmt.Errorf("export unreached %s: %w", id, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return cw.Flush()
}

// SuppressedHeader is the header of the suppressed export. Each call
// returns a fresh slice.
func SuppressedHeader() []string { return []string{"email_sha256", "reason", "at"} }

// Suppressed writes the suppression entries that campaign id added.
func Suppressed(ctx context.Context, w io.Writer, st Store, id string) error {
	if _, err := st.Campaign(ctx, id); err != nil {
		return err
	}
	if err := st.DrainSuppression(ctx, id); err != nil {
		return err
	}
	cw := NewCSVWriter(w)
	if err := cw.Write(SuppressedHeader()); err != nil {
		return fmt.Errorf("export suppressed %s: %w", id, err)
	}
	err := st.Suppressions(ctx, id, func(e redisstore.SuppressionEntry) error {
		return cw.Write([]string{e.Hash, e.Reason, e.At.UTC().Format(time.RFC3339)})
	})
	if err != nil {
		return err
	}
	return cw.Flush()
}
