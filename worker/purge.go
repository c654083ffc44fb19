package worker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
)

// handlePurge ends a campaign's retention period: every per-recipient
// record goes, confirmed addresses included (they were exported by then),
// and only the aggregate counts, the timeline and the consent ledger stay.
// It waits for the expiry to have finished the campaign; purging twice is
// harmless.
func (s *Server) handlePurge(ctx context.Context, t *asynq.Task) error {
	var p expirePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Campaign == "" {
		return fmt.Errorf("purge: bad payload %q: %w", t.Payload(), asynq.SkipRetry)
	}
	c, err := s.store.Campaign(ctx, p.Campaign)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	if c.Status != repermit.StatusFinished {
		// asynq retries with backoff until the expiry has run.
		return fmt.Errorf("purge %s: campaign is %s, not finished yet", c.ID, c.Status)
	}
	if err := s.store.PurgeRecipients(ctx, c.ID); err != nil {
		return err
	}
	s.log.Info("retention ended: per-recipient records purged", "campaign", c.ID)
	return nil
}
