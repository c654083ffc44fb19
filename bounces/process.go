package bounces

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
)

// DefaultSoftLimit is how many of one recipient's mails must soft-bounce
// (4.x.x) to make it bounced; reports about the same mail count once.
const DefaultSoftLimit = 3

// Store is what a Processor needs of the system of record.
type Store interface {
	Campaign(ctx context.Context, id string) (*repermit.Campaign, error)
	CampaignBySeq(ctx context.Context, seq uint32) (*repermit.Campaign, error)
	Recipient(ctx context.Context, id string, idx int64) (*repermit.Recipient, error)
	RecordFeedback(ctx context.Context, f redisstore.Feedback) (first bool, soft int64, err error)
	// BounceFrom bounces r, its webhook event naming the source.
	BounceFrom(ctx context.Context, r *repermit.Recipient, now time.Time, source string) error
	Record(ctx context.Context, a redisstore.Answer) (redisstore.AnswerResult, error)
	// SubjectOf is the keyed address hash a complaint's webhook event
	// names the recipient by.
	SubjectOf(ctx context.Context, r *repermit.Recipient) (string, error)
}

var _ Store = (*redisstore.Store)(nil)

// Processor applies reports to the recipients they name.
type Processor struct {
	Store  Store
	Signer *token.Signer
	// SoftLimit defaults to DefaultSoftLimit.
	SoftLimit int
	// Now defaults to time.Now.
	Now func() time.Time
}

// Outcome is what Process did with one message.
type Outcome struct {
	Report
	// Matched is true when the report named a recipient by a token this
	// deployment signed; only then is the message repermit's to file away.
	Matched   bool
	Campaign  string
	Recipient int64
	// First is false for a report processed before (the same message
	// again after a crash, or a copy of it): it changed nothing now.
	First bool
	// Changed names the state change this report caused, if any:
	// "bounced" or "unsubscribed".
	Changed repermit.State
}

func (p *Processor) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Process parses one raw message and, when it is a DSN or an ARF complaint
// that names a recipient by a signed token, applies it: a hard bounce
// bounces and suppresses the recipient, a soft one is counted once per
// mail it quotes (SoftKey) and bounces at SoftLimit, a complaint
// unsubscribes and suppresses. Processing the same message again changes
// nothing. Anything else is returned unmatched
// and left alone. An error is Redis' and the message should be tried
// again later.
func (p *Processor) Process(ctx context.Context, raw []byte) (Outcome, error) {
	rep, err := Parse(raw)
	if err != nil {
		return Outcome{}, nil // not MIME: not ours to touch
	}
	out := Outcome{Report: rep}
	if rep.Kind != Hard && rep.Kind != Soft && rep.Kind != Complaint {
		return out, nil
	}
	claims, ok := p.claims(rep)
	if !ok {
		return out, nil
	}
	c, err := p.Store.CampaignBySeq(ctx, claims.CampaignSeq)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return out, nil // signed by us, but the campaign is gone
	}
	if err != nil {
		return out, err
	}
	if !claims.IsFor(c.ID) {
		return out, nil // signed for another campaign that had this number
	}
	sum := sha256.Sum256(raw)
	key := hex.EncodeToString(sum[:])
	if rep.Kind == Soft && rep.MessageID != "" {
		key = SoftKey(rep.MessageID)
	}
	applied, err := p.Apply(ctx, rep.Kind, rep.Source, c.ID, int64(claims.Recipient), key)
	applied.Report = rep
	return applied, err
}

// SoftKey is the report key of a soft bounce of the mail with Message-ID
// id. A relay reports a deferred mail more than once (a delay warning,
// then the failure; an ESP each retry), and a greylisted or full mailbox
// is deferred again and again: SoftLimit counts mails that soft-bounced,
// not reports, so that a mailbox that is only slow is not bounced and
// suppressed for good by the retries of one mail.
func SoftKey(id string) string {
	return "soft:" + strings.ToLower(strings.Trim(strings.TrimSpace(id), "<>"))
}

// Apply applies a report already matched to a recipient (by a signed token,
// or by an ESP webhook whose signature was checked): kind Hard, Soft or
// Complaint, from source ("dsn", "arf", "webhook"), identified by key
// (the same key again changes nothing).
func (p *Processor) Apply(ctx context.Context, kind Kind, source, campaign string, idx int64, key string) (Outcome, error) {
	out := Outcome{Report: Report{Kind: kind, Source: source}, Matched: true, Campaign: campaign, Recipient: idx}
	fb := redisstore.Feedback{Campaign: campaign, Index: idx, Key: key, Source: source, At: p.now()}
	var err error
	switch kind {
	case Hard:
		fb.Kind = redisstore.FeedbackHard
		if out.Changed, err = p.bounce(ctx, campaign, idx, source); err != nil {
			return out, err
		}
	case Complaint:
		fb.Kind = redisstore.FeedbackComplaint
		if out.Changed, fb.Subject, err = p.unsubscribe(ctx, campaign, idx, source); err != nil {
			return out, err
		}
	case Soft:
		fb.Kind = redisstore.FeedbackSoft
	default:
		return Outcome{Report: out.Report}, nil
	}
	// The state change is made before the report is recorded: after a
	// crash between the two, the retry finds the change made (a no-op)
	// and records the report once.
	first, soft, err := p.Store.RecordFeedback(ctx, fb)
	if err != nil {
		return out, err
	}
	out.First = first
	limit := p.SoftLimit
	if limit <= 0 {
		limit = DefaultSoftLimit
	}
	if kind == Soft && soft >= int64(limit) {
		if out.Changed, err = p.bounce(ctx, campaign, idx, source); err != nil {
			return out, err
		}
	}
	return out, nil
}

// claims finds the first token this deployment signed: a VERP address the
// report came to (or the original's Return-Path), else an unsubscribe link
// of the original mail quoted in the report. Tokens past their deadline
// still name the recipient.
func (p *Processor) claims(rep Report) (token.Claims, bool) {
	now := p.now()
	for _, a := range rep.Addresses {
		if !strings.HasPrefix(strings.ToLower(a), token.BouncePrefix) {
			continue
		}
		c, err := p.Signer.VerifyBounceAddress(a, now)
		if err == nil || errors.Is(err, token.ErrExpired) {
			return c, true
		}
	}
	for _, l := range rep.Links {
		u, err := url.Parse(l)
		if err != nil {
			continue
		}
		i := strings.LastIndex(u.Path, token.UnsubscribePath)
		if i < 0 {
			continue
		}
		c, err := p.Signer.Verify(u.Path[i+len(token.UnsubscribePath):], now)
		if (err == nil || errors.Is(err, token.ErrExpired)) && c.Purpose == token.Unsubscribe {
			return c, true
		}
	}
	return token.Claims{}, false
}

func (p *Processor) bounce(ctx context.Context, id string, idx int64, source string) (repermit.State, error) {
	r, err := p.Store.Recipient(ctx, id, idx)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	err = p.Store.BounceFrom(ctx, r, p.now(), source)
	if errors.Is(err, redisstore.ErrNotAllowed) {
		return "", nil // answered, expired or bounced already
	}
	if err != nil {
		return "", err
	}
	return repermit.StateBounced, nil
}

// unsubscribe records a complaint as an unsubscribe, with the consent
// record saying where it came from. It returns the keyed address hash
// the complaint's webhook event names the recipient by, read before the
// unsubscribe erases the address (or, when it is erased already, from
// the recipient's consent record; "" for one expired or bounced).
func (p *Processor) unsubscribe(ctx context.Context, id string, idx int64, source string) (repermit.State, string, error) {
	r, err := p.Store.Recipient(ctx, id, idx)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	subject, err := p.Store.SubjectOf(ctx, r)
	if err != nil {
		return "", "", err
	}
	res, err := p.Store.Record(ctx, redisstore.Answer{
		Campaign:  id,
		Index:     idx,
		State:     repermit.StateUnsubscribed,
		At:        p.now(),
		UserAgent: "repermit: spam complaint (" + source + ")",
		Current:   r,
	})
	switch {
	case repermit.ErrorCode(err) == repermit.EGONE, errors.Is(err, redisstore.ErrNotAllowed):
		return "", subject, nil
	case err != nil:
		return "", "", err
	case !res.Changed:
		return "", subject, nil
	}
	return repermit.StateUnsubscribed, subject, nil
}
