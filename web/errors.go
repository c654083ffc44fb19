package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/token"
)

// Errors of the token pages that need no Redis to tell.
var (
	errNotFound = repermit.Errorf(repermit.ENOTFOUND, "unknown link")
	errGone     = repermit.Errorf(repermit.EGONE, "this link is no longer valid")
	errTooMany  = repermit.Errorf("too_many", "too many requests")
	errTooLarge = repermit.Errorf("too_large", "request too large")
)

// goneError is a 410 that knows why the person in front of it can no
// longer answer, so that the page says the right thing to them.
type goneError struct {
	kind string
	// campaign is the campaign the link belongs to, if known: its 410 page
	// names the controller like every page of the campaign.
	campaign *repermit.Campaign
}

// Kinds of goneError, as PageData.Gone carries them to the error page.
const (
	goneExpired   = "expired"   // asked, did not answer in time: address deleted
	goneUnreached = "unreached" // never asked before the campaign ended
	gonePurged    = "purged"    // the retention ended: nothing of them is kept here
)

func (g *goneError) Error() string { return "gone: " + g.kind }
func (g *goneError) Unwrap() error { return errGone }

// tokenError maps a verification failure to the page to show.
func tokenError(err error) error {
	if errors.Is(err, token.ErrExpired) {
		return errGone
	}
	return errNotFound
}

// httpStatus is the one place where an error becomes an HTTP status.
func httpStatus(err error) int {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return http.StatusServiceUnavailable
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	switch repermit.ErrorCode(err) {
	case repermit.ENOTFOUND:
		return http.StatusNotFound
	case repermit.EGONE:
		return http.StatusGone
	case repermit.EINVALID:
		return http.StatusBadRequest
	case repermit.ECONFLICT:
		return http.StatusConflict
	case repermit.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	case "too_many":
		return http.StatusTooManyRequests
	case "too_large":
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// fail shows the error page in locale and logs what the user does not see.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, locale string, err error) {
	s.failIn(w, r, nil, locale, err)
}

// failFor shows the error page of a request whose link resolved: in the
// recipient's language, with the campaign's controller in the footer.
func (s *Server) failFor(w http.ResponseWriter, r *http.Request, t *target, err error) {
	s.failIn(w, r, t.campaign, t.locale, err)
}

// failIn shows the error page; c is the link's campaign if known (a 410
// names its own).
func (s *Server) failIn(w http.ResponseWriter, r *http.Request, c *repermit.Campaign, locale string, err error) {
	code := httpStatus(err)
	switch {
	case code >= 500:
		s.log.Error("request failed", "method", r.Method, "route", r.Pattern, "status", code, "err", err)
	case code == http.StatusBadRequest:
		s.log.Info("bad request", "route", r.Pattern, "err", err)
	}
	switch code {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "60")
	}
	var g *goneError
	gone := errors.As(err, &g)
	if gone && g.campaign != nil {
		c = g.campaign
	}
	data := &PageData{Root: root(r.URL.Path), Status: code}
	if c != nil {
		d := s.pages.campaignData(c, r.URL.Path)
		d.Status, d.Topics = code, nil
		data = &d
		if locale == "" {
			locale, _ = pagesLocale.Match(r.Header.Get("Accept-Language"), pagesLocale.Covered(c))
		}
	}
	if gone {
		data.Gone = g.kind
	}
	if locale == "" {
		locale = acceptLanguage(r)
	}
	s.page(w, r, code, "", pageError, locale, data)
}

// notFound is the page for every path no route serves.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, "", errNotFound)
}

// page renders a page and writes it with code. A failing template is
// logged and answered with a bare 500, never half a page.
func (s *Server) page(w http.ResponseWriter, r *http.Request, code int, dir, page, locale string, data *PageData) {
	buf, err := s.pages.render(dir, page, locale, data)
	if err != nil {
		s.log.Error("render page", "page", page, "locale", locale, "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	defer s.pages.release(buf)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// resultPage writes the result page of an answer (see pageSet.result).
func (s *Server) resultPage(w http.ResponseWriter, c *repermit.Campaign, locale string, data *PageData) {
	body, done, err := s.pages.result(c, locale, data)
	if err != nil {
		s.log.Error("render page", "page", pageResult, "locale", locale, "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	defer done()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// staticPage writes a page from the static cache.
func (s *Server) staticPage(w http.ResponseWriter, r *http.Request, c *repermit.Campaign, page, locale string, data PageData) {
	sp, err := s.pages.static(c, page, locale, data)
	if err != nil {
		s.fail(w, r, locale, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(sp.body)
}

// pagesLocale is the catalog of the pages' strings.
var pagesLocale = locale.Default()

// acceptLanguage picks, among every language of the catalog, the one the
// browser prefers (q-values honoured), or "" for the default.
func acceptLanguage(r *http.Request) string {
	l, _ := locale.Default().Match(r.Header.Get("Accept-Language"), locale.Default().Locales())
	return l
}
