package web

import (
	"bytes"
	"html"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/templates"
)

// PreviewPage is one rendered recipient page.
type PreviewPage struct {
	Name string // file name for it: landing.html, result-confirmed.html, …
	HTML []byte
}

// Preview renders every recipient page of campaign c, with its template
// overrides, as a reader of locale loc would see it: the landing page
// before and after a "yes", the result of each answer, the unsubscribe
// page and the 404 and 410 pages. A broken override is an error naming
// its file and line, not the fallback the server would use.
func Preview(c *repermit.Campaign, loc string) ([]PreviewPage, error) {
	ps, err := newPageSet(templates.Pages(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	ps.strict = true
	at := c.StartAt
	if at.IsZero() {
		at = time.Now()
	}
	at = at.Add(26 * time.Hour).Truncate(time.Minute)
	topics := c.Topics
	if len(topics) > 1 {
		topics = topics[:1]
	}
	// Pages link their stylesheet relative to themselves; a preview's
	// pages sit beside static/style.css.
	const path = "/SAMPLETOKEN"
	type variant struct {
		name, page string
		edit       func(*PageData)
	}
	variants := []variant{
		{"landing.html", pageLanding, func(*PageData) {}},
		{"landing-answered.html", pageLanding, func(d *PageData) {
			d.Answer = &Answered{State: repermit.StateConfirmed, At: at, Topics: topics}
		}},
		{"result-confirmed.html", pageResult, func(d *PageData) {
			d.Answer = &Answered{State: repermit.StateConfirmed, At: at, Topics: topics}
			d.Changed = true
		}},
		{"result-declined.html", pageResult, func(d *PageData) {
			d.Answer = &Answered{State: repermit.StateDeclined, At: at}
			d.Changed = true
		}},
		{"result-unsubscribed.html", pageResult, func(d *PageData) {
			d.Answer = &Answered{State: repermit.StateUnsubscribed, At: at}
			d.Changed = true
		}},
		{"unsubscribe.html", pageUnsubscribe, func(d *PageData) { d.Topics = nil }},
		{"error-404.html", pageError, func(d *PageData) { *d = PageData{Root: d.Root, Status: http.StatusNotFound} }},
		{"error-410.html", pageError, func(d *PageData) { d.Status = http.StatusGone }},
	}
	out := make([]PreviewPage, 0, len(variants))
	for _, v := range variants {
		d := ps.campaignData(c, path)
		v.edit(&d)
		dir := c.TemplatesDir
		if v.page == pageError {
			dir = ""
		}
		buf, err := ps.render(dir, v.page, loc, &d)
		if err != nil {
			return nil, repermit.Errorf(repermit.ErrorCode(err), "%s (rendering %s for locale %s)", repermit.ErrorMessage(err), v.name, loc)
		}
		out = append(out, PreviewPage{Name: v.name, HTML: bytes.Clone(buf.Bytes())})
		ps.release(buf)
	}
	return out, nil
}

// Stylesheet returns the recipients' pages' stylesheet, which a preview
// writes to static/style.css beside its pages.
func Stylesheet() ([]byte, error) {
	return fs.ReadFile(templates.Pages(), "style.css")
}

// CheckPages renders every recipient page of campaign c once in each of
// locales, as validate does before a launch, so that a broken page
// override or a missing message fails there rather than on every
// recipient's click. A campaign with a controller must name it on every
// page but the 404 (which knows no campaign), as the default layout's
// footer does: an override of layout.html or a page that drops it is
// refused.
func CheckPages(c *repermit.Campaign, locales []string) error {
	probe := *c
	if c.Controller.Name != "" {
		probe.Controller = c.Controller.Probe()
	}
	for _, l := range locales {
		pages, err := Preview(&probe, l)
		if err != nil {
			return err
		}
		if c.Controller.Name == "" {
			continue
		}
		for _, p := range pages {
			if p.Name == "error-404.html" {
				continue
			}
			if m := probe.Controller.Missing(html.UnescapeString(string(p.HTML))); m != "" {
				return repermit.Errorf(repermit.EINVALID,
					"%s: page %s for locale %s does not show the controller's %s; every page must say who is asking (GDPR Art. 13): keep the footer of the default layout.html",
					filepath.Join(c.TemplatesDir, "pages"), p.Name, l, m)
			}
		}
	}
	return nil
}
