// Package webhook sends consent events to a CRM, signed per the Standard
// Webhooks spec (https://www.standardwebhooks.com): headers webhook-id,
// webhook-timestamp and webhook-signature ("v1," + base64 HMAC-SHA256 of
// "id.timestamp.body", keyed with the base64-decoded part of the secret
// after "whsec_").
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// Event types. The consent.* events come from the consent log, one per
// record; the others from the campaign's outbox (redisstore/events.go).
const (
	ConsentConfirmed     = "consent.confirmed"
	ConsentDeclined      = "consent.declined"
	ConsentUnsubscribed  = "consent.unsubscribed"
	ConsentTopicsChanged = "consent.topics_changed"
	// RecipientBounced: the recipient's address bounced (hard, or soft
	// too often); it is erased and suppressed.
	RecipientBounced = "recipient.bounced"
	// RecipientComplained: a spam complaint about a mail of the campaign
	// (one event per report; the recipient was unsubscribed, which its
	// own consent.unsubscribed event told just before, if it could be).
	RecipientComplained = "recipient.complained"
	// RecipientExpired: mailed and silent at the deadline; erased.
	RecipientExpired = "recipient.expired"
	// CampaignPaused: the campaign's waves crossed a stop threshold.
	CampaignPaused = "campaign.paused"
)

// Event is the JSON body of a request.
type Event struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      Data      `json:"data"`
}

// Data describes what happened. Email is set only while the recipient is
// confirmed and their address kept; an erased recipient is named by
// Subject, the keyed hash the consent log holds. Recipient is absent from
// a campaign's event (campaign.paused), which carries Pause instead.
type Data struct {
	Campaign     string   `json:"campaign"`
	Recipient    *int64   `json:"recipient,omitempty"`
	Record       int64    `json:"record,omitempty"` // the record's seq in the campaign's consent log (consent.*)
	Subject      string   `json:"subject,omitempty"`
	Email        string   `json:"email,omitempty"`
	Answer       string   `json:"answer,omitempty"`
	Topics       []string `json:"topics,omitempty"`
	TopicsBefore []string `json:"topics_before,omitempty"`
	IP           string   `json:"ip,omitempty"`
	UserAgent    string   `json:"user_agent,omitempty"`
	// Source is where a bounce or complaint was reported: smtp (the
	// server's reply), dsn, arf or webhook (an email service provider's).
	Source string `json:"source,omitempty"`
	Pause  *Pause `json:"pause,omitempty"`
}

// Pause is why the waves paused a campaign, every figure that crossed a
// threshold as status shows it.
type Pause struct {
	Wave     int                 `json:"wave"`      // the last wave sent
	NextWave int                 `json:"next_wave"` // the wave resume sends
	Reason   string              `json:"reason"`
	Crossed  []repermit.Crossing `json:"crossed"`
}

// FromRecord makes the event of a consent record; email is the address of
// a confirmed recipient, "" otherwise.
func FromRecord(r repermit.ConsentRecord, email string) Event {
	typ := ConsentConfirmed
	switch {
	case r.Answer == repermit.StateDeclined:
		typ = ConsentDeclined
	case r.Answer == repermit.StateUnsubscribed:
		typ = ConsentUnsubscribed
	case len(r.TopicsBefore) > 0:
		typ = ConsentTopicsChanged
	}
	idx := r.Recipient
	return Event{Type: typ, Timestamp: r.At.UTC(), Data: Data{
		Campaign: r.Campaign, Recipient: &idx, Record: r.Seq, Subject: r.Subject, Email: email,
		Answer: string(r.Answer), Topics: r.Topics, TopicsBefore: r.TopicsBefore, IP: r.IP, UserAgent: r.UserAgent,
	}}
}

// FromOutbox makes the event of an outbox entry of campaign.
func FromOutbox(campaign string, e redisstore.Event) (Event, error) {
	ev := Event{Timestamp: e.At, Data: Data{Campaign: campaign, Subject: e.Subject, Source: e.Source}}
	switch e.Type {
	case redisstore.EventBounced:
		ev.Type = RecipientBounced
	case redisstore.EventComplained:
		ev.Type = RecipientComplained
	case redisstore.EventExpired:
		ev.Type = RecipientExpired
	case redisstore.EventPaused:
		ev.Type = CampaignPaused
		if e.Stop == nil {
			return Event{}, fmt.Errorf("outbox event %d of %s: a pause without its figures", e.N, campaign)
		}
		ev.Data.Pause = &Pause{Wave: e.Stop.Wave, NextWave: e.Stop.NextWave, Reason: e.Stop.Reason(), Crossed: e.Stop.Crossed}
		return ev, nil
	default:
		return Event{}, fmt.Errorf("outbox event %d of %s: unknown type %q", e.N, campaign, e.Type)
	}
	idx := e.Recipient
	ev.Data.Recipient = &idx
	return ev, nil
}

// ID is the webhook-id of a consent record's event: the same for every
// attempt, so that the receiver can drop repeats. seq is the campaign's
// launch sequence number, so a campaign id used again later gives other
// ids.
func ID(campaign string, seq uint32, record int64) string {
	return "msg_" + campaign + "_" + strconv.FormatUint(uint64(seq), 10) + "_" + strconv.FormatInt(record, 10)
}

// OutboxID is the webhook-id of the campaign's n-th outbox event; "e"
// keeps it apart from the records' ids.
func OutboxID(campaign string, seq uint32, n int64) string {
	return "msg_" + campaign + "_" + strconv.FormatUint(uint64(seq), 10) + "_e" + strconv.FormatInt(n, 10)
}

// Sign returns the webhook-signature header value.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := Key(secret)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts.Unix())
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// Key decodes a "whsec_…" secret.
func Key(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	key, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(key) == 0 {
		return nil, repermit.Errorf(repermit.EINVALID, "webhook secret is not \"whsec_\" and base64")
	}
	return key, nil
}

// Post delivers one event to url, signed with secret, and returns an
// error unless the receiver answered 2xx.
func Post(ctx context.Context, c *http.Client, url, secret, id string, now time.Time, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", id, err)
	}
	sig, err := Sign(secret, id, now, body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", id, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", id, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook %s: HTTP %s", id, resp.Status)
	}
	return nil
}
