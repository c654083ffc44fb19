package web

import (
	"net/http"
	"net/url"
	"slices"
	"unicode/utf8"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
)

// getConfirm shows the landing page. It only reads.
//
// By recipient state: pending or sent gets the form until the deadline;
// confirmed gets the form with their answer and their topics ticked, at
// any time (they may change topics or decline); declined, unsubscribed,
// bounced and suppressed get the result page, as nothing can change for
// them; expired, unreached, and the unanswered after the deadline get 410.
func (s *Server) getConfirm(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.withTimeout(r)
	defer cancel()
	t, err := s.resolve(ctx, r, token.Confirm)
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
	default:
		data.Answer = answered(rec)
		s.resultPage(w, c, t.locale, &data)
		return
	}
	switch a := r.URL.Query().Get("answer"); a {
	case "yes", "no":
		data.Preselect = a
	}
	if rec.State == repermit.StateConfirmed {
		showChoice(&data, rec)
		s.page(w, r, http.StatusOK, c.TemplatesDir, pageLanding, t.locale, &data)
		return
	}
	s.staticPage(w, r, c, pageLanding, t.locale, data)
}

// showChoice fills the landing page of a confirmed recipient: their answer
// and, ticked, the topics they chose (their own act, not a default).
func showChoice(data *PageData, rec *repermit.Recipient) {
	data.Answer = answered(rec)
	data.TopicChange = len(data.Topics) > 0
	for i := range data.Topics {
		data.Topics[i].Checked = slices.Contains(rec.Topics, data.Topics[i].Name)
	}
}

// localeOf is the locale of a resolved target's pages, "" when there is
// none (the browser's is used then).
func localeOf(t *target) string {
	if t == nil {
		return ""
	}
	return t.locale
}

// postConfirm records an answer. A replay, or an answer the state does not
// allow any more (confirm after decline), changes nothing and shows the
// recorded answer. A confirmed recipient who confirms other topics changes
// them; one who unticks every topic on their page (change=topics) declines.
func (s *Server) postConfirm(w http.ResponseWriter, r *http.Request) {
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
	t, err := s.resolve(ctx, r, token.Confirm)
	if err == nil {
		err = t.gone()
	}
	if err != nil {
		s.fail(w, r, localeOf(t), err)
		return
	}
	c := t.campaign
	ans, err := parseAnswerForm(form, c.Topics)
	if err != nil {
		s.failFor(w, r, t, err)
		return
	}
	if ans.state == repermit.StateConfirmed && t.recipient.State == repermit.StateConfirmed &&
		form.Get("change") == "topics" && len(form["topic"]) == 0 {
		// Withdrawing the last topic is withdrawing consent.
		ans = answerForm{state: repermit.StateDeclined}
	}
	data := s.pages.campaignData(c, r.URL.Path)
	// A confirmed recipient answered on the page that offers a change of
	// topics; its words are what the record's wording hash names.
	wordingData := data
	wordingData.TopicChange = t.recipient.State == repermit.StateConfirmed && len(data.Topics) > 0
	wording, text, err := s.pages.wordingHash(c, pageLanding, t.locale, wordingData)
	if err != nil {
		s.failFor(w, r, t, err)
		return
	}
	res, err := s.store.Record(ctx, redisstore.Answer{
		Campaign:      c.ID,
		Index:         t.recipient.Index,
		State:         ans.state,
		Topics:        ans.topics,
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
		s.metrics.answers.WithLabelValues(string(ans.state)).Inc()
	}
	data.Answer = answered(res.Recipient)
	data.Changed = res.Changed
	s.resultPage(w, c, t.locale, &data)
}

// answerForm is a parsed POST /c body.
type answerForm struct {
	state  repermit.State // confirmed or declined
	topics []string       // confirmed topics, in the campaign's order
}

// parseAnswerForm reads choice=confirm|decline and repeated topic=… fields.
// Every topic must be one of the campaign's (else EINVALID); duplicates
// collapse. A confirm with no topic ticked keeps all of the campaign's
// topics: the page says so beside the unticked boxes, and the pressed
// "Yes" is the affirmative act. A decline records no topics.
func parseAnswerForm(v url.Values, topics []string) (answerForm, error) {
	choices := v["choice"]
	if len(choices) != 1 {
		return answerForm{}, repermit.Errorf(repermit.EINVALID, "expected one choice, got %d", len(choices))
	}
	var f answerForm
	switch choices[0] {
	case "confirm":
		f.state = repermit.StateConfirmed
	case "decline":
		f.state = repermit.StateDeclined
		return f, nil
	default:
		return answerForm{}, repermit.Errorf(repermit.EINVALID, "choice %q is neither confirm nor decline", clip(choices[0]))
	}
	chosen := make([]bool, len(topics))
	n := 0
	for _, t := range v["topic"] {
		i := slices.Index(topics, t)
		if i < 0 {
			return answerForm{}, repermit.Errorf(repermit.EINVALID, "unknown topic %q", clip(t))
		}
		if !chosen[i] {
			chosen[i] = true
			n++
		}
	}
	if n == 0 {
		f.topics = slices.Clone(topics)
		return f, nil
	}
	f.topics = make([]string, 0, n)
	for i, t := range topics {
		if chosen[i] {
			f.topics = append(f.topics, t)
		}
	}
	return f, nil
}

// clip shortens client input quoted in an error.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	for i := max; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}

// maxUserAgent bounds what a consent record keeps of the User-Agent: enough
// to tell a browser from a mail client's one-click, not a fingerprint
// store.
const maxUserAgent = 256

func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) > maxUserAgent {
		ua = clipBytes(ua, maxUserAgent)
	}
	return ua
}

func clipBytes(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
