package hooks

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
)

// ParseSendGridKey reads the verification key SendGrid shows for a signed
// event webhook: base64 of a DER (PKIX) ECDSA P-256 public key.
func ParseSendGridKey(s string) (*ecdsa.PublicKey, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "SendGrid verification key: not base64: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "SendGrid verification key: %v", err)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, repermit.Errorf(repermit.EINVALID, "SendGrid verification key: %T, want an ECDSA key", pub)
	}
	return k, nil
}

func (h *Handler) fresh(unix string) error {
	sec, err := strconv.ParseInt(unix, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", errAuth, unix)
	}
	if d := h.cfg.Now().Sub(time.Unix(sec, 0)); d > h.cfg.Tolerance || d < -h.cfg.Tolerance {
		return fmt.Errorf("%w: timestamp %s is %s away from now", errAuth, unix, d.Round(time.Second))
	}
	return nil
}

// postmark: Postmark does not sign webhooks; it documents HTTP basic auth
// credentials in the webhook URL, checked here in constant time.
// https://postmarkapp.com/developer/webhooks/webhooks-overview
func (h *Handler) postmark(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(h.cfg.PostmarkUser)) != 1 ||
		subtle.ConstantTimeCompare([]byte(pass), []byte(h.cfg.PostmarkPassword)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="repermit hooks"`)
		h.respond(w, "postmark", errAuth)
		return
	}
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	var ev struct {
		RecordType string
		ID         json.Number
		Type       string
		MessageID  string
		Metadata   map[string]string
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		h.respond(w, "postmark", repermit.Errorf(repermit.EINVALID, "postmark: %v", err))
		return
	}
	e := event{messageID: ev.Metadata["repermit-id"], key: ev.RecordType + ":" + ev.ID.String()}
	switch {
	case ev.RecordType == "SpamComplaint":
		e.kind = bounces.Complaint
	case ev.RecordType == "Bounce" && (ev.Type == "HardBounce" || ev.Type == "BadEmailAddress"):
		e.kind = bounces.Hard
	case ev.RecordType == "Bounce" && (ev.Type == "SoftBounce" || ev.Type == "Transient" || ev.Type == "DnsError"):
		e.kind = bounces.Soft
	}
	h.respond(w, "postmark", h.apply(r.Context(), "postmark", []event{e}))
}

// sendgrid: the signed event webhook, an ECDSA P-256 signature (base64
// DER) over the timestamp header followed by the raw body.
// https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
func (h *Handler) sendgrid(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	ts := r.Header.Get("X-Twilio-Email-Event-Webhook-Timestamp")
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Twilio-Email-Event-Webhook-Signature"))
	if err != nil || len(sig) == 0 {
		h.respond(w, "sendgrid", fmt.Errorf("%w: no signature", errAuth))
		return
	}
	digest := sha256.Sum256(append([]byte(ts), b...))
	if !ecdsa.VerifyASN1(h.cfg.SendGridKey, digest[:], sig) {
		h.respond(w, "sendgrid", fmt.Errorf("%w: bad signature", errAuth))
		return
	}
	if err := h.fresh(ts); err != nil {
		h.respond(w, "sendgrid", err)
		return
	}
	var evs []struct {
		Event     string `json:"event"`
		Type      string `json:"type"`
		SMTPID    string `json:"smtp-id"`
		EventID   string `json:"sg_event_id"`
		MessageID string `json:"sg_message_id"`
		// RepermitID is the unique_args field (mailer.SendGridIDField)
		// every mail's X-SMTPAPI header sets: the Message-ID repermit
		// wrote. smtp-id is often SendGrid's own id instead, so it is only
		// the fallback.
		RepermitID string `json:"repermit_id"`
	}
	if err := json.Unmarshal(b, &evs); err != nil {
		h.respond(w, "sendgrid", repermit.Errorf(repermit.EINVALID, "sendgrid: %v", err))
		return
	}
	events := make([]event, 0, len(evs))
	for _, ev := range evs {
		e := event{messageID: cmp.Or(ev.RepermitID, ev.SMTPID), key: ev.EventID}
		switch {
		case ev.Event == "spamreport":
			e.kind = bounces.Complaint
		case ev.Event == "bounce" && ev.Type != "blocked":
			e.kind = bounces.Hard
		case ev.Event == "bounce" || ev.Event == "deferred":
			e.kind = bounces.Soft
		}
		events = append(events, e)
	}
	h.respond(w, "sendgrid", h.apply(r.Context(), "sendgrid", events))
}

// mailgun: the signature in the body, hex HMAC-SHA256 of timestamp and
// token under the webhook signing key.
// https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks
func (h *Handler) mailgun(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	var p struct {
		Signature struct {
			Timestamp string `json:"timestamp"`
			Token     string `json:"token"`
			Signature string `json:"signature"`
		} `json:"signature"`
		EventData struct {
			ID       string `json:"id"`
			Event    string `json:"event"`
			Severity string `json:"severity"`
			Message  struct {
				Headers struct {
					MessageID string `json:"message-id"`
				} `json:"headers"`
			} `json:"message"`
		} `json:"event-data"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		h.respond(w, "mailgun", fmt.Errorf("%w: unreadable body", errAuth))
		return
	}
	mac := hmac.New(sha256.New, h.cfg.MailgunKey)
	mac.Write([]byte(p.Signature.Timestamp + p.Signature.Token))
	got, err := hex.DecodeString(p.Signature.Signature)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		h.respond(w, "mailgun", fmt.Errorf("%w: bad signature", errAuth))
		return
	}
	if err := h.fresh(p.Signature.Timestamp); err != nil {
		h.respond(w, "mailgun", err)
		return
	}
	ev := p.EventData
	e := event{messageID: ev.Message.Headers.MessageID, key: ev.ID}
	switch {
	case ev.Event == "complained":
		e.kind = bounces.Complaint
	case ev.Event == "failed" && ev.Severity == "permanent":
		e.kind = bounces.Hard
	case ev.Event == "failed" && ev.Severity == "temporary":
		e.kind = bounces.Soft
	}
	h.respond(w, "mailgun", h.apply(r.Context(), "mailgun", []event{e}))
}
