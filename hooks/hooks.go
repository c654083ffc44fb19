// Package hooks receives bounce and complaint events from email service
// providers: Amazon SES through SNS, Postmark, SendGrid and Mailgun. Each
// request is authenticated as its provider documents before anything is
// read from it; a forged one changes nothing. Events name the mail by the
// Message-ID repermit wrote (or, for SES, also by the VERP Return-Path)
// and go through the same path as the bounce mailbox (bounces.Processor).
package hooks

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/token"
)

// Config says which providers are accepted and how each authenticates.
// A provider without its setting answers 404.
type Config struct {
	Processor *bounces.Processor

	// PostmarkUser and PostmarkPassword are the HTTP basic auth
	// credentials set in the Postmark webhook URL.
	PostmarkUser, PostmarkPassword string
	// SendGridKey is the signed event webhook's verification key.
	SendGridKey *ecdsa.PublicKey
	// MailgunKey is the HTTP webhook signing key.
	MailgunKey []byte
	// SES enables /hooks/ses. SNSTopics, if set, are the only topic ARNs
	// accepted. SNSClient fetches signing certificates and confirms
	// subscriptions; default a client with a 10s timeout.
	SES       bool
	SNSTopics []string
	SNSClient *http.Client

	// Tolerance is how far a signed timestamp may be from now (SendGrid,
	// Mailgun); default 15 minutes.
	Tolerance time.Duration
	// MaxBodyBytes limits a request body; default 1 MiB.
	MaxBodyBytes int64
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Handler serves POST /hooks/{provider}.
type Handler struct {
	cfg   Config
	mux   *http.ServeMux
	certs *certCache
}

// New returns the handler; mount it at /hooks/.
func New(cfg Config) *Handler {
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = 15 * time.Minute
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SNSClient == nil {
		cfg.SNSClient = &http.Client{Timeout: 10 * time.Second}
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), certs: newCertCache()}
	if cfg.PostmarkUser != "" {
		h.mux.HandleFunc("POST /hooks/postmark", h.postmark)
	}
	if cfg.SendGridKey != nil {
		h.mux.HandleFunc("POST /hooks/sendgrid", h.sendgrid)
	}
	if len(cfg.MailgunKey) > 0 {
		h.mux.HandleFunc("POST /hooks/mailgun", h.mailgun)
	}
	if cfg.SES {
		h.mux.HandleFunc("POST /hooks/ses", h.ses)
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// errAuth is a request that failed its provider's authentication.
var errAuth = errors.New("not authenticated")

// body reads the request body within the limit.
func (h *Handler) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return nil, false
	}
	return b, true
}

// event is one provider event, authenticated, in repermit's terms.
type event struct {
	kind      bounces.Kind
	messageID string // the Message-ID repermit wrote
	verp      string // SES: the envelope sender
	key       string // provider's event id, for idempotence
}

// apply applies authenticated events. It returns an error only for a
// failure worth a retry by the provider (Redis).
func (h *Handler) apply(ctx context.Context, provider string, events []event) error {
	for _, e := range events {
		if e.kind != bounces.Hard && e.kind != bounces.Soft && e.kind != bounces.Complaint {
			continue
		}
		campaign, idx, ok := h.match(ctx, e)
		if !ok {
			h.cfg.Logger.Info("webhook event for a mail that is not repermit's", "provider", provider, "message_id", e.messageID)
			continue
		}
		key := provider + ":" + e.key
		if e.kind == bounces.Soft && e.messageID != "" {
			// SendGrid's deferred and Mailgun's temporary failures come
			// once per retry of the same mail: one soft bounce.
			key = provider + ":" + bounces.SoftKey(e.messageID)
		}
		out, err := h.cfg.Processor.Apply(ctx, e.kind, "webhook", campaign, idx, key)
		if err != nil {
			return err
		}
		h.cfg.Logger.Info("webhook event", "provider", provider, "kind", e.kind.String(), "campaign", campaign,
			"recipient", idx, "changed", string(out.Changed), "first", out.First)
	}
	return nil
}

func (h *Handler) match(ctx context.Context, e event) (string, int64, bool) {
	p := h.cfg.Processor
	if e.verp != "" {
		if c, err := p.Signer.VerifyBounceAddress(e.verp, h.cfg.Now()); err == nil || errors.Is(err, token.ErrExpired) {
			if camp, err := p.Store.CampaignBySeq(ctx, c.CampaignSeq); err == nil {
				return camp.ID, int64(c.Recipient), true
			}
		}
	}
	campaign, idx, ok := mailer.ParseMessageID(e.messageID)
	if !ok {
		return "", 0, false
	}
	if _, err := p.Store.Campaign(ctx, campaign); err != nil {
		return "", 0, false
	}
	return campaign, idx, true
}

// respond maps the outcome to what providers expect: 2xx ends their
// retries, 401 tells of a bad signature, 503 asks for a retry.
func (h *Handler) respond(w http.ResponseWriter, provider string, err error) {
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, errAuth):
		h.cfg.Logger.Warn("webhook refused: authentication failed", "provider", provider, "err", err)
		http.Error(w, "authentication failed", http.StatusUnauthorized)
	case repermit.ErrorCode(err) == repermit.EINVALID:
		http.Error(w, repermit.ErrorMessage(err), http.StatusBadRequest)
	default:
		h.cfg.Logger.Error("webhook not applied", "provider", provider, "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
	}
}
