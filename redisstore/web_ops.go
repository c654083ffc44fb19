package redisstore

import (
	"context"
	"strconv"

	"github.com/repermit/repermit"
)

// LedgerHead returns the hash of a campaign's last consent record and the
// number of records, read together, so that an export can state which
// records it covers and that none is missing at its end. ENOTFOUND when
// the campaign does not exist or is still importing.
func (s *Store) LedgerHead(ctx context.Context, id string) (head string, records int64, err error) {
	vals, err := s.rdb.HMGet(ctx, s.metaKey(id), fStatus, fLedgerHead, fLedgerSeq).Result()
	if err != nil {
		return "", 0, unavailable("ledger head "+id, err)
	}
	status, _ := vals[0].(string)
	if status == "" || status == string(repermit.StatusImporting) {
		return "", 0, repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	}
	head, _ = vals[1].(string)
	if n, _ := vals[2].(string); n != "" {
		records, _ = strconv.ParseInt(n, 10, 64)
	}
	return head, records, nil
}
