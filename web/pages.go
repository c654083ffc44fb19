package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/repermit/repermit"
)

// PageData is what every recipient page template receives. Campaign
// overrides (TEMPLATES/pages/PAGE.LOCALE.html) may use any of it.
type PageData struct {
	Lang          string    // locale of the template rendered, for <html lang>
	Root          string    // relative path from the page to the site root ("../")
	Sender        string    // display name of the campaign's From, or its address
	SenderAddress string    // address of the campaign's From
	Subject       string    // subject of the campaign's mail: what the recipient would keep getting
	Deadline      time.Time // when the campaign ends and silent recipients expire
	// Topics are the campaign's topics as checkboxes. They are never ticked
	// when a page is first shown: a pre-ticked box is no valid consent
	// (CJEU C-673/17, Planet49). "Yes" with no box ticked keeps every topic.
	Topics []Topic
	// Preselect is "yes" or "no" when the mail's link asked for that answer
	// (?answer=yes|no): the page then focuses and emphasises that button,
	// so one press is all it takes. It never changes the page's words.
	Preselect string
	// Answer is the recorded answer: on the landing page of a recipient who
	// confirmed before, and on the result page.
	Answer *Answered
	// Changed is true on a result page when this request recorded the
	// answer, false when it had been recorded before.
	Changed bool
	// Status is the HTTP status of an error page.
	Status int
}

// Topic is one checkbox.
type Topic struct {
	Name    string
	Checked bool
}

// Answered is a recipient's recorded answer.
type Answered struct {
	State  repermit.State
	At     time.Time
	Topics []string
}

// Page names. Recipient pages exist once per locale (PAGE.LOCALE.html).
const (
	pageLanding     = "landing"
	pageResult      = "result"
	pageUnsubscribe = "unsubscribe"
	pageError       = "error"
)

// defaultLocale is what every page has and what unknown locales fall back to.
const defaultLocale = "en"

// maxCached bounds the template and wording caches. Locales come from
// recipients' CSV columns and Accept-Language, so their variety is not ours
// to bound; past the limit, pages are parsed per request instead.
const maxCached = 1024

// pageSet parses templates once and keeps them: the embedded defaults and
// each campaign's overrides, by directory, page and locale.
type pageSet struct {
	defaults fs.FS
	log      *slog.Logger
	funcs    template.FuncMap

	mu      sync.RWMutex
	tmpls   map[pageKey]*pageTmpl
	statics map[staticKey]staticPage

	bufs sync.Pool
}

type pageKey struct{ dir, page, locale string }

type pageTmpl struct {
	t    *template.Template
	lang string
}

// staticKey names a page that is the same for every recipient of a
// campaign who has not answered: the landing and unsubscribe forms.
type staticKey struct {
	campaign  string
	seq       uint32
	page      string
	locale    string
	preselect string
	root      string
}

type staticPage struct {
	body []byte
	sum  string // hex SHA-256 of body
}

func newPageSet(defaults fs.FS, log *slog.Logger) (*pageSet, error) {
	p := &pageSet{
		defaults: defaults,
		log:      log,
		funcs:    template.FuncMap{"join": strings.Join},
		tmpls:    make(map[pageKey]*pageTmpl),
		statics:  make(map[staticKey]staticPage),
	}
	p.bufs.New = func() any { return new(bytes.Buffer) }
	// Parse every default now: a broken default fails at start, not on a
	// recipient's click, and the first requests find warm caches.
	for _, page := range []string{pageLanding, pageResult, pageUnsubscribe, pageError} {
		for _, loc := range []string{"en", "de"} {
			if _, err := p.lookup("", page, loc); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// localeCandidates turns a recipient's locale ("de-AT", "de_at", "DE") into
// the file locales to try, most specific first, ending with the default.
func localeCandidates(locale string) []string {
	locale = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(locale), "_", "-"))
	if len(locale) > 16 || strings.ContainsFunc(locale, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-'
	}) {
		return []string{defaultLocale}
	}
	out := make([]string, 0, 3)
	if locale != "" {
		out = append(out, locale)
		if base, _, ok := strings.Cut(locale, "-"); ok && base != "" {
			out = append(out, base)
		}
	}
	if len(out) == 0 || out[len(out)-1] != defaultLocale {
		out = append(out, defaultLocale)
	}
	return out
}

// lookup returns the parsed template for a page in a locale, reading the
// campaign's override directory dir first. Overrides are read once; a
// changed override needs a restart.
func (p *pageSet) lookup(dir, page, locale string) (*pageTmpl, error) {
	key := pageKey{dir, page, locale}
	p.mu.RLock()
	t, ok := p.tmpls[key]
	p.mu.RUnlock()
	if ok {
		return t, nil
	}
	t, err := p.parse(dir, page, locale)
	if err != nil && dir != "" {
		p.log.Error("campaign page template unusable; using the default", "dir", dir, "page", page, "locale", locale, "err", err)
		t, err = p.parse("", page, locale)
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.tmpls) < maxCached {
		p.tmpls[key] = t
	}
	p.mu.Unlock()
	return t, nil
}

func (p *pageSet) parse(dir, page, locale string) (*pageTmpl, error) {
	layout, _, err := p.read(dir, "layout.html")
	if err != nil {
		return nil, err
	}
	var src []byte
	lang := ""
	for _, loc := range localeCandidates(locale) {
		b, found, err := p.read(dir, page+"."+loc+".html")
		if err != nil {
			return nil, err
		}
		if found {
			src, lang = b, loc
			break
		}
	}
	if src == nil {
		return nil, fmt.Errorf("page %s: no template for locale %q nor %q", page, locale, defaultLocale)
	}
	t, err := template.New("layout").Funcs(p.funcs).Parse(string(layout))
	if err != nil {
		return nil, fmt.Errorf("parse layout.html: %w", err)
	}
	if _, err := t.New(page).Parse(string(src)); err != nil {
		return nil, fmt.Errorf("parse %s.%s.html: %w", page, lang, err)
	}
	return &pageTmpl{t: t, lang: lang}, nil
}

// read returns a template file from the override directory dir if it is
// there, else from the defaults; found is false when neither has it.
func (p *pageSet) read(dir, name string) (b []byte, found bool, err error) {
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "pages", name))
		switch {
		case err == nil:
			return b, true, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, false, fmt.Errorf("read template: %w", err)
		}
	}
	b, err = fs.ReadFile(p.defaults, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read default template %s: %w", name, err)
	}
	return b, true, nil
}

// render executes a page into a fresh buffer, so that a failing template
// gives an error page rather than half a page. The caller returns the
// buffer with release.
func (p *pageSet) render(dir, page, locale string, data *PageData) (*bytes.Buffer, error) {
	t, err := p.lookup(dir, page, locale)
	if err != nil {
		return nil, err
	}
	data.Lang = t.lang
	buf := p.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	if err := t.t.ExecuteTemplate(buf, "layout", data); err != nil {
		p.release(buf)
		return nil, fmt.Errorf("render %s.%s: %w", page, t.lang, err)
	}
	return buf, nil
}

func (p *pageSet) release(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		p.bufs.Put(buf)
	}
}

// static returns a page that depends on the campaign and the request's
// locale, preselection and path depth only, rendered once and kept: it
// saves the template work on every GET of an unanswered link. data must
// hold campaignData and Preselect only. The body must not be modified.
func (p *pageSet) static(c *repermit.Campaign, page, locale string, data PageData) (staticPage, error) {
	key := staticKey{c.ID, c.Seq, page, locale, data.Preselect, data.Root}
	p.mu.RLock()
	sp, ok := p.statics[key]
	p.mu.RUnlock()
	if ok {
		return sp, nil
	}
	buf, err := p.render(c.TemplatesDir, page, locale, &data)
	if err != nil {
		return staticPage{}, err
	}
	sp.body = bytes.Clone(buf.Bytes())
	p.release(buf)
	sum := sha256.Sum256(sp.body)
	sp.sum = hex.EncodeToString(sum[:])
	p.mu.Lock()
	if len(p.statics) < maxCached {
		p.statics[key] = sp
	}
	p.mu.Unlock()
	return sp, nil
}

// wordingHash returns the hex SHA-256 of a page exactly as a recipient
// without a recorded answer sees it on GET without ?answer: the words the
// answer was given to. Preselection changes only which button is focused
// and emphasised, never a word, so it is left out.
func (p *pageSet) wordingHash(c *repermit.Campaign, page, locale string, data PageData) (string, error) {
	data.Preselect = ""
	sp, err := p.static(c, page, locale, data)
	return sp.sum, err
}
