package web

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/token"
)

// target is what an authentic token points to.
type target struct {
	campaign  *repermit.Campaign
	recipient *repermit.Recipient
	locale    string // for the pages: the recipient's, else the browser's
	// late is true once the campaign's deadline has passed: only a
	// confirmed recipient may still answer (change topics or withdraw).
	late bool
}

// resolve verifies the token of the request for purpose and reads its
// campaign and recipient. The MAC is checked first: a forged or truncated
// token costs no Redis command. A token past its deadline still resolves,
// because a confirmed recipient may withdraw at any time; whoever else
// holds one gets 410 (see gone).
func (s *Server) resolve(ctx context.Context, r *http.Request, purpose token.Purpose) (*target, error) {
	now := s.cfg.Now()
	claims, err := s.signer.Verify(r.PathValue("token"), now)
	late := errors.Is(err, token.ErrExpired)
	if err != nil && !late {
		return nil, tokenError(err)
	}
	if claims.Purpose != purpose {
		return nil, errNotFound
	}
	c, err := s.campaigns.get(ctx, claims.CampaignSeq)
	if err != nil {
		return nil, err
	}
	if !claims.IsFor(c.ID) && (!claims.Unbound() || c.BoundTokens) {
		// Signed for another campaign that had this sequence number, or
		// an unbound link of before the binding shown to a campaign
		// launched since (only older campaigns mailed such links).
		return nil, errNotFound
	}
	late = late || c.Status == repermit.StatusFinished || !now.Before(c.Deadline)
	rec, err := s.readRecipient(ctx, r, c.ID, claims)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND && late {
		// An authentic token names a recipient that was imported: the
		// retention ended and took every record of them.
		return nil, &goneError{kind: gonePurged, campaign: c}
	}
	if err != nil {
		return nil, err
	}
	t := &target{campaign: c, recipient: rec, locale: rec.Locale, late: late}
	if t.locale == "" {
		// No locale in the CSV, or a declined recipient whose address and
		// locale were erased: the browser's preference among the
		// languages the campaign has every wording in.
		if l, ok := locale.Default().Match(r.Header.Get("Accept-Language"), locale.Default().Covered(c)); ok {
			t.locale = l
		}
	}
	return t, nil
}

// readRecipient reads the recipient of campaign id that a token's claims
// name. The answer posted from a landing page this process showed takes
// the recipient the page was made from instead (landedCache).
func (s *Server) readRecipient(ctx context.Context, r *http.Request, id string, claims token.Claims) (*repermit.Recipient, error) {
	landing := claims.Purpose == token.Confirm
	if landing && r.Method == http.MethodPost {
		if rec := s.landed.take(claims.CampaignSeq, id, claims.Recipient); rec != nil {
			return rec, nil
		}
	}
	rec, err := s.store.Recipient(ctx, id, int64(claims.Recipient))
	if err == nil && landing && r.Method == http.MethodGet {
		s.landed.put(claims.CampaignSeq, rec)
	}
	return rec, err
}

// gone returns the 410 for a recipient who can no longer answer, naming
// why, or nil when they can: anyone before the deadline, a confirmed
// recipient at any time.
func (t *target) gone() error {
	switch st := t.recipient.State; {
	case st == repermit.StateExpired:
		return &goneError{kind: goneExpired, campaign: t.campaign}
	case st == repermit.StateUnreached:
		return &goneError{kind: goneUnreached, campaign: t.campaign}
	case t.late && (st == repermit.StatePending || st == repermit.StateSent):
		// The expiry is about to make them expired (or unreached).
		if st == repermit.StatePending {
			return &goneError{kind: goneUnreached, campaign: t.campaign}
		}
		return &goneError{kind: goneExpired, campaign: t.campaign}
	}
	return nil
}

// withTimeout bounds a request's Redis work.
func (s *Server) withTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
}

// campaignData fills the campaign's part of a page. It must not depend on
// the recipient: the wording hash is computed from it once per campaign.
func (p *pageSet) campaignData(c *repermit.Campaign, path string) PageData {
	d := PageData{
		Root:       root(path),
		Deadline:   c.Deadline,
		Subject:    c.Subject,
		Controller: c.Controller,
		campaign:   c,
	}
	d.Sender, d.SenderAddress = p.sender(c.From)
	if len(c.Topics) > 0 {
		d.Topics = make([]Topic, len(c.Topics))
		for i, t := range c.Topics {
			d.Topics[i] = Topic{Name: t}
		}
	}
	return d
}

// sender returns the display name (else the address) and the address of
// a campaign's From, parsed once per From: parsing it took about 4 % of
// the CPU of a landing page. A From that does not parse is shown as it is.
func (p *pageSet) sender(from string) (name, address string) {
	p.mu.RLock()
	v, ok := p.senders[from]
	p.mu.RUnlock()
	if ok {
		return v[0], v[1]
	}
	name, address = from, from
	if a, err := mail.ParseAddress(from); err == nil {
		name, address = a.Address, a.Address
		if a.Name != "" {
			name = a.Name
		}
	}
	p.mu.Lock()
	if len(p.senders) >= maxCached {
		clear(p.senders)
	}
	p.senders[from] = [2]string{name, address}
	p.mu.Unlock()
	return name, address
}

func answered(rec *repermit.Recipient) *Answered {
	return &Answered{State: rec.State, At: rec.AnsweredAt, Topics: rec.Topics}
}

// allow applies the per-client POST limit.
func (s *Server) allow(r *http.Request) error {
	if s.limiter == nil {
		return nil
	}
	if !s.limiter.allow(limitKey(s.clientAddr(r)), time.Now()) {
		return errTooMany
	}
	return nil
}

// readForm reads a POST body of at most MaxBodyBytes, URL-encoded or
// multipart (RFC 8058 allows both). Query parameters are not merged in: an
// answer comes from the body only.
func (s *Server) readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if r.Header.Get("Content-Type") == formURLEncoded {
		// What a browser sends, read as ParseForm would without its two
		// parses of the media type and its copy of the values into
		// r.Form: a malformed query string fails the request as there.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, formError(err)
		}
		v, err := url.ParseQuery(string(b))
		if err == nil && r.URL.RawQuery != "" {
			_, err = url.ParseQuery(r.URL.RawQuery)
		}
		if err != nil {
			return nil, formError(err)
		}
		return v, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		// The whole body fits in memory by the limit above, so no file
		// part can spill to disk.
		if err := r.ParseMultipartForm(s.cfg.MaxBodyBytes); err != nil {
			return nil, formError(err)
		}
		defer r.MultipartForm.RemoveAll()
		return r.PostForm, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, formError(err)
	}
	return r.PostForm, nil
}

// formURLEncoded is the Content-Type of a form as browsers send it.
const formURLEncoded = "application/x-www-form-urlencoded"

func formError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	return repermit.Errorf(repermit.EINVALID, "unreadable form: %v", err)
}
