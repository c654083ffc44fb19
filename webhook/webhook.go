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
)

// Event types.
const (
	ConsentConfirmed     = "consent.confirmed"
	ConsentDeclined      = "consent.declined"
	ConsentUnsubscribed  = "consent.unsubscribed"
	ConsentTopicsChanged = "consent.topics_changed"
)

// Event is the JSON body of a request.
type Event struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      Data      `json:"data"`
}

// Data describes the answer. Email is set only while the recipient is
// confirmed and their address kept; an erased recipient is named by
// Subject, the keyed hash the consent log holds.
type Data struct {
	Campaign     string   `json:"campaign"`
	Recipient    int64    `json:"recipient"`
	Record       int64    `json:"record"` // the record's seq in the campaign's consent log
	Subject      string   `json:"subject"`
	Email        string   `json:"email,omitempty"`
	Answer       string   `json:"answer"`
	Topics       []string `json:"topics,omitempty"`
	TopicsBefore []string `json:"topics_before,omitempty"`
	IP           string   `json:"ip,omitempty"`
	UserAgent    string   `json:"user_agent,omitempty"`
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
	return Event{Type: typ, Timestamp: r.At.UTC(), Data: Data{
		Campaign: r.Campaign, Recipient: r.Recipient, Record: r.Seq, Subject: r.Subject, Email: email,
		Answer: string(r.Answer), Topics: r.Topics, TopicsBefore: r.TopicsBefore, IP: r.IP, UserAgent: r.UserAgent,
	}}
}

// ID is the event's webhook-id: the same for every attempt, so that the
// receiver can drop repeats. seq is the campaign's launch sequence number,
// so a campaign id used again later gives other ids.
func ID(campaign string, seq uint32, record int64) string {
	return "msg_" + campaign + "_" + strconv.FormatUint(uint64(seq), 10) + "_" + strconv.FormatInt(record, 10)
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
