package web

import (
	"net/http"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
)

// getUnsubscribe shows the unsubscribe button, or the result for a
// recipient who gets no more mail anyway. It only reads.
func (s *Server) getUnsubscribe(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.withTimeout(r)
	defer cancel()
	t, err := s.resolve(ctx, r, token.Unsubscribe)
	if err == nil {
		err = t.gone()
	}
	if err != nil {
		s.fail(w, r, localeOf(t), err)
		return
	}
	c, rec := t.campaign, t.recipient
	data := s.pages.campaignData(c, r.URL.Path)
	switch rec.State {
	case repermit.StatePending, repermit.StateSent, repermit.StateConfirmed:
		data.Topics = nil
		s.staticPage(w, r, c, pageUnsubscribe, t.locale, data)
	default:
		data.Answer = answered(rec)
		s.resultPage(w, c, t.locale, &data)
	}
}

// postUnsubscribe unsubscribes, also after the deadline for a confirmed
// recipient (consent is withdrawn as easily as it was given, at any time),
// and after the retention while their address hash is kept. Any POST does: the RFC 8058 one-click POST
// of a mail client (body List-Unsubscribe=One-Click, URL-encoded or
// multipart, no cookies) and the page's own form alike. It answers 200
// without a redirect, as RFC 8058 asks. The page's form marks itself with
// from=page; only then was our wording shown, and only then is its hash
// recorded.
func (s *Server) postUnsubscribe(w http.ResponseWriter, r *http.Request) {
	if err := s.allow(r); err != nil {
		s.fail(w, r, "", err)
		return
	}
	form, err := s.readForm(w, r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	ctx, cancel := s.withTimeout(r)
	defer cancel()
	t, err := s.resolve(ctx, r, token.Unsubscribe)
	if err == nil {
		err = t.gone()
	}
	if err != nil {
		s.fail(w, r, localeOf(t), err)
		return
	}
	c := t.campaign
	data := s.pages.campaignData(c, r.URL.Path)
	data.Topics = nil
	wording := ""
	var text []byte
	if form.Get("from") == "page" {
		if wording, text, err = s.pages.wordingHash(c, pageUnsubscribe, t.locale, data); err != nil {
			s.failFor(w, r, t, err)
			return
		}
	}
	res, err := s.store.Record(ctx, redisstore.Answer{
		Campaign:      c.ID,
		Index:         t.recipient.Index,
		State:         repermit.StateUnsubscribed,
		At:            s.cfg.Now(),
		IP:            recordedIP(s.clientAddr(r), s.cfg.IPMode),
		UserAgent:     userAgent(r),
		WordingSHA256: wording,
		Wording:       text,
		Current:       t.recipient,
	})
	if err != nil {
		s.failFor(w, r, t, err)
		return
	}
	if res.Changed {
		s.metrics.answers.WithLabelValues(string(repermit.StateUnsubscribed)).Inc()
	}
	data.Answer = answered(res.Recipient)
	data.Changed = res.Changed
	s.resultPage(w, c, t.locale, &data)
}
