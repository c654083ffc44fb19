package hooks

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/mailer"
)

// snsHost is what the host of a SigningCertURL or SubscribeURL must be:
// Amazon SNS in some region. AWS documents checking it, so that a message
// cannot bring its own certificate.
// https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
var snsHost = regexp.MustCompile(`^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`)

// snsMessage is the SNS envelope of an HTTP(S) delivery.
type snsMessage struct {
	Type             string
	MessageId        string
	Token            string
	TopicArn         string
	Subject          *string
	Message          string
	Timestamp        string
	SignatureVersion string
	Signature        string
	SigningCertURL   string
	SubscribeURL     string
}

// stringToSign is the canonical form AWS signs: name and value on lines of
// their own, in this order, Subject only when present.
func (m snsMessage) stringToSign() string {
	var b strings.Builder
	add := func(k, v string) { b.WriteString(k + "\n" + v + "\n") }
	add("Message", m.Message)
	add("MessageId", m.MessageId)
	if m.Type == "Notification" {
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
	} else {
		add("SubscribeURL", m.SubscribeURL)
	}
	add("Timestamp", m.Timestamp)
	if m.Type != "Notification" {
		add("Token", m.Token)
	}
	add("TopicArn", m.TopicArn)
	add("Type", m.Type)
	return b.String()
}

// certCache keeps the signing certificates fetched, by URL.
type certCache struct {
	mu    sync.Mutex
	certs map[string]*x509.Certificate
}

func newCertCache() *certCache { return &certCache{certs: make(map[string]*x509.Certificate)} }

func snsURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || !snsHost.MatchString(u.Hostname()) || u.Port() != "" {
		return nil, fmt.Errorf("%w: %q is not an https URL of Amazon SNS", errAuth, raw)
	}
	return u, nil
}

func (h *Handler) signingCert(raw string) (*x509.Certificate, error) {
	u, err := snsURL(raw)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(u.Path, ".pem") {
		return nil, fmt.Errorf("%w: signing certificate URL %q is not a .pem", errAuth, raw)
	}
	h.certs.mu.Lock()
	c := h.certs.certs[raw]
	h.certs.mu.Unlock()
	if c != nil {
		return c, nil
	}
	resp, err := h.cfg.SNSClient.Get(u.String())
	if err != nil {
		return nil, fmt.Errorf("fetch SNS signing certificate: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch SNS signing certificate: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("fetch SNS signing certificate: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: signing certificate is not PEM", errAuth)
	}
	c, err = x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: signing certificate: %v", errAuth, err)
	}
	h.certs.mu.Lock()
	h.certs.certs[raw] = c
	h.certs.mu.Unlock()
	return c, nil
}

func (h *Handler) verifySNS(m snsMessage) error {
	var alg x509.SignatureAlgorithm
	switch m.SignatureVersion {
	case "1":
		alg = x509.SHA1WithRSA
	case "2":
		alg = x509.SHA256WithRSA
	default:
		return fmt.Errorf("%w: SignatureVersion %q", errAuth, m.SignatureVersion)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", errAuth)
	}
	cert, err := h.signingCert(m.SigningCertURL)
	if err != nil {
		return err
	}
	if err := cert.CheckSignature(alg, []byte(m.stringToSign()), sig); err != nil {
		return fmt.Errorf("%w: %v", errAuth, err)
	}
	if len(h.cfg.SNSTopics) > 0 && !slices.Contains(h.cfg.SNSTopics, m.TopicArn) {
		return fmt.Errorf("%w: topic %s is not configured", errAuth, m.TopicArn)
	}
	return nil
}

// ses: Amazon SES bounce and complaint notifications through an SNS
// HTTPS subscription. The SNS signature is checked with the certificate
// at SigningCertURL, whose host must be Amazon SNS's; a
// SubscriptionConfirmation is confirmed by fetching its SubscribeURL,
// after the same checks.
func (h *Handler) ses(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	var m snsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		h.respond(w, "ses", fmt.Errorf("%w: unreadable body", errAuth))
		return
	}
	if err := h.verifySNS(m); err != nil {
		h.respond(w, "ses", err)
		return
	}
	switch m.Type {
	case "SubscriptionConfirmation":
		u, err := snsURL(m.SubscribeURL)
		if err != nil {
			h.respond(w, "ses", err)
			return
		}
		resp, err := h.cfg.SNSClient.Get(u.String())
		if err != nil {
			h.respond(w, "ses", fmt.Errorf("confirm SNS subscription: %w", err))
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			h.respond(w, "ses", fmt.Errorf("confirm SNS subscription: %s", resp.Status))
			return
		}
		h.cfg.Logger.Info("SNS subscription confirmed", "topic", m.TopicArn)
		h.respond(w, "ses", nil)
		return
	case "Notification":
	default: // UnsubscribeConfirmation and anything new: nothing to do
		h.respond(w, "ses", nil)
		return
	}
	var n struct {
		NotificationType string `json:"notificationType"`
		EventType        string `json:"eventType"`
		Bounce           struct {
			BounceType string `json:"bounceType"`
		} `json:"bounce"`
		Mail struct {
			Source        string `json:"source"`
			CommonHeaders struct {
				MessageID string `json:"messageId"`
			} `json:"commonHeaders"`
			// Headers are the original's, when the identity's
			// notifications include them.
			Headers []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"headers"`
		} `json:"mail"`
	}
	if err := json.Unmarshal([]byte(m.Message), &n); err != nil {
		h.respond(w, "ses", repermit.Errorf(repermit.EINVALID, "ses: notification: %v", err))
		return
	}
	// SES writes a Message-ID of its own over the one repermit wrote, so
	// the mail is named by the VERP envelope sender (source) or by the
	// copy of the Message-ID in the original headers; commonHeaders is
	// the last resort.
	e := event{messageID: n.Mail.CommonHeaders.MessageID, verp: n.Mail.Source, key: m.MessageId}
	for _, hdr := range n.Mail.Headers {
		if strings.EqualFold(hdr.Name, mailer.PostmarkMetadataHeader) {
			e.messageID = hdr.Value
		}
	}
	switch kind := n.NotificationType + n.EventType; {
	case kind == "Complaint":
		e.kind = bounces.Complaint
	case kind == "Bounce" && n.Bounce.BounceType == "Permanent":
		e.kind = bounces.Hard
	case kind == "Bounce" && n.Bounce.BounceType == "Transient":
		e.kind = bounces.Soft
	}
	h.respond(w, "ses", h.apply(r.Context(), "ses", []event{e}))
}
