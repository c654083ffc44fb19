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
	"github.com/repermit/repermit/redisstore"
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
		records, events, err := s.cfg.Store.WebhookTotals(ctx, id)
		if err != nil {
			return err
		}
		for i := range c.Webhooks {
			st, err := s.cfg.Store.Webhook(ctx, id, i)
			if err != nil {
				return err
			}
			if st.Delivered >= records && st.EventsDelivered >= events {
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
// the campaign's one order (consent records and outbox events merged,
// redisstore.WebhookItems), from where the last delivery stopped. A
// failure ends the task with an error, and asynq retries it with the
// webhook backoff (WebhookRetryBase doubling up to WebhookRetryMax), so a
// receiver that is down loses nothing: the positions move only past
// events it accepted. An event keeps its webhook-id across attempts.
//
// At-least-once window: between the receiver's 2xx and WebhookDelivered
// below, a crash of this worker (or a Redis failure, or a lease that ran
// out) leaves the position before the event, and the next attempt sends
// it again, with the same webhook-id; the receiver drops it by that id.
// Nothing else repeats an event, and nothing skips one.
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
	items, err := s.cfg.Store.WebhookItems(ctx, c.ID, st, webhookBatch)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 15 * time.Second}
	trim := false
	for _, it := range items {
		id, ev, err := s.webhookEvent(ctx, c, it)
		if err != nil {
			return err
		}
		if err := webhook.Post(ctx, client, hook.URL, hook.Secret, id, s.cfg.Now(), ev); err != nil {
			if ferr := s.cfg.Store.WebhookFailed(ctx, c.ID, p.Hook); ferr != nil {
				s.log.Warn("webhook failure count", "err", ferr)
			}
			return err
		}
		if it.Event != nil {
			st.EventPosition, st.EventsDelivered = it.Event.StreamID, st.EventsDelivered+1
			trim = true
		} else {
			st.Position, st.Delivered = it.LedgerID, st.Delivered+1
		}
		if err := s.cfg.Store.WebhookDelivered(ctx, c.ID, p.Hook, st); err != nil {
			return err
		}
	}
	if trim {
		// Delivered outbox events are of no more use once every webhook
		// has them; the consent log stays, it is the record.
		if err := s.cfg.Store.TrimEvents(ctx, c.ID, len(c.Webhooks)); err != nil {
			s.log.Warn("trim webhook outbox", "campaign", c.ID, "err", err)
		}
	}
	return nil
}

// webhookEvent makes the request of one item: its webhook-id and event.
func (s *Server) webhookEvent(ctx context.Context, c *repermit.Campaign, it redisstore.WebhookItem) (string, webhook.Event, error) {
	if it.Event != nil {
		// Outbox events are of recipients whose address is erased
		// (bounced, expired, unsubscribed by the complaint) or of the
		// campaign: never an address.
		ev, err := webhook.FromOutbox(c.ID, *it.Event)
		if err != nil {
			return "", webhook.Event{}, fmt.Errorf("webhooks %s: %w", c.ID, err)
		}
		return webhook.OutboxID(c.ID, c.Seq, it.Event.N), ev, nil
	}
	rec, err := repermit.DecodeStoredRecord(it.Record)
	if err != nil {
		return "", webhook.Event{}, fmt.Errorf("webhooks %s: record %s: %w", c.ID, it.LedgerID, err)
	}
	// The address goes out only while the recipient is confirmed and it
	// is kept; after a withdrawal, expiry or retention the CRM gets the
	// subject hash alone.
	email := ""
	if r, err := s.cfg.Store.Recipient(ctx, c.ID, rec.Recipient); err == nil && r.State == repermit.StateConfirmed {
		email = r.Email
	}
	return webhook.ID(c.ID, c.Seq, rec.Seq), webhook.FromRecord(rec, email), nil
}
