package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/webhook"
)

// TypeWebhooks delivers a campaign's consent events to one webhook.
const TypeWebhooks = "repermit:webhooks"

type webhookPayload struct {
	Campaign string `json:"campaign"`
	Hook     int    `json:"hook"`
}

// webhookBatch bounds the events one task delivers before it yields.
const webhookBatch = 500

// webhookLoop offers, once per WebhookInterval, a delivery task to every
// webhook that has events waiting. The task id is one per campaign and
// webhook, so at most one delivers at a time (which keeps the order), and
// a task that is waiting for its retry blocks the next offer.
func (s *Server) webhookLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.WebhookInterval)
	defer t.Stop()
	for {
		if err := s.offerWebhooks(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("offer webhooks", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) offerWebhooks(ctx context.Context) error {
	ids, err := s.store.Campaigns(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		c, err := s.store.Campaign(ctx, id)
		if err != nil || len(c.Webhooks) == 0 {
			continue
		}
		size, err := s.cfg.Store.LedgerSize(ctx, id)
		if err != nil {
			return err
		}
		for i := range c.Webhooks {
			st, err := s.cfg.Store.Webhook(ctx, id, i)
			if err != nil {
				return err
			}
			if st.Delivered >= size {
				continue
			}
			err = s.sched.enqueue(ctx, TypeWebhooks, webhookPayload{Campaign: id, Hook: i}, "webhooks:"+id+":"+strconv.Itoa(i),
				asynq.MaxRetry(100000), asynq.Timeout(10*time.Minute))
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// handleWebhooks delivers the events of one campaign to one webhook, in
// consent log order, from where the last delivery stopped. A failure ends
// the task with an error, and asynq retries it with the worker's backoff
// (RetryBase doubling up to RetryMax), so a receiver that is down loses
// nothing: the position moves only past events it accepted. An event
// keeps its webhook-id across attempts; a receiver that accepted an event
// whose acknowledgement got lost sees that id again, and drops it.
func (s *Server) handleWebhooks(ctx context.Context, t *asynq.Task) error {
	var p webhookPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Campaign == "" {
		return fmt.Errorf("webhooks: bad payload %q: %w", t.Payload(), asynq.SkipRetry)
	}
	c, err := s.store.Campaign(ctx, p.Campaign)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	if p.Hook < 0 || p.Hook >= len(c.Webhooks) {
		return nil
	}
	hook := c.Webhooks[p.Hook]
	st, err := s.cfg.Store.Webhook(ctx, c.ID, p.Hook)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 15 * time.Second}
	return s.cfg.Store.LedgerAfter(ctx, c.ID, st.Position, webhookBatch, func(raw []byte, streamID string) error {
		rec, err := repermit.DecodeStoredRecord(raw)
		if err != nil {
			return fmt.Errorf("webhooks %s: record after %s: %w", c.ID, st.Position, err)
		}
		// The address goes out only while the recipient is confirmed and it
		// is kept; after a withdrawal, expiry or retention the CRM gets
		// the subject hash alone.
		email := ""
		if r, err := s.cfg.Store.Recipient(ctx, c.ID, rec.Recipient); err == nil && r.State == repermit.StateConfirmed {
			email = r.Email
		}
		id := webhook.ID(c.ID, c.Seq, rec.Seq)
		if err := webhook.Post(ctx, client, hook.URL, hook.Secret, id, s.cfg.Now(), webhook.FromRecord(rec, email)); err != nil {
			if ferr := s.cfg.Store.WebhookFailed(ctx, c.ID, p.Hook); ferr != nil {
				s.log.Warn("webhook failure count", "err", ferr)
			}
			return err
		}
		st.Delivered++
		st.Position = streamID
		return s.cfg.Store.WebhookDelivered(ctx, c.ID, p.Hook, streamID, st.Delivered)
	})
}
