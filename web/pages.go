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
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/locale"
)

// PageData is what every recipient page template receives. Campaign
// overrides (TEMPLATES/pages/PAGE.LOCALE.html) may use any of it.
type PageData struct {
	Lang          string    // locale of the template rendered, for <html lang>
	Root          string    // relative path from the page to the site root ("../")
	Sender        string    // display name of the campaign's From, or its address
	SenderAddress string    // address of the campaign's From
	Subject       string    // subject of the campaign's mail in the page's language
	ListName      string    // what the recipient would keep getting, in the page's language
	Deadline      time.Time // when the campaign ends and silent recipients expire
	// DeadlineText is Deadline as the page's language writes it, in the
	// campaign's time zone: the same words as in the mail.
	DeadlineText string
	// Controller is who is responsible for the data (GDPR Art. 13), shown in
	// the footer; empty on pages that belong to no campaign (404).
	Controller repermit.Controller
	// Topics are the campaign's topics as checkboxes. They are never ticked
	// when a page is first shown: a pre-ticked box is no valid consent
	// (CJEU C-673/17, Planet49). "Yes" with no box ticked keeps every topic.
	// A confirmed recipient sees their own earlier choice ticked.
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
	// Gone says, on a 410 page, why this person can no longer answer:
	// "expired" (did not answer in time; address deleted), "unreached"
	// (never asked before the campaign ended), "purged" (the retention
	// ended), or "" when it is not known.
	Gone string
	// TopicChange is true on the landing page of a confirmed recipient: the
	// boxes show their own choice, and unticking every box withdraws.
	TopicChange bool

	campaign *repermit.Campaign
	words    *locale.Words
}

// T returns message key of the page's language (templates/locales) with
// the campaign's values and the name/value pairs of args filled in.
func (d *PageData) T(key string, args ...any) (string, error) {
	if d.words == nil {
		return "", fmt.Errorf("message %q: no language chosen", key)
	}
	return d.words.T(key, args...)
}

// Time writes a moment in the page's language and the campaign's time
// zone, with its UTC offset.
func (d *PageData) Time(t time.Time) string {
	if d.words == nil {
		return t.Format(time.RFC3339)
	}
	return d.words.Time(t)
}

// Labels returns the labels of topic ids in the page's language, joined by
// ", ".
func (d *PageData) Labels(ids []string) string {
	if d.words == nil {
		return strings.Join(ids, ", ")
	}
	return d.words.Labels(ids)
}

// ErrorKey is the message key prefix of an error page's status
// ("error.404"); statuses without their own words share error.500.
func (d *PageData) ErrorKey() string {
	switch d.Status {
	case 400, 404, 410, 413, 429, 503:
		return fmt.Sprintf("error.%d", d.Status)
	}
	return "error.500"
}

// localize fills what depends on the page's language.
func (d *PageData) localize(w *locale.Words) {
	d.words = w
	d.Lang = w.Locale
	d.ListName = w.Var("list")
	d.Subject = w.Var("subject")
	d.DeadlineText = w.Var("deadline")
	if len(d.Topics) > 0 {
		byID := make(map[string]locale.Topic)
		for _, t := range w.Topics() {
			byID[t.ID] = t
		}
		topics := make([]Topic, len(d.Topics))
		for i, t := range d.Topics {
			t.Label, t.Description = byID[t.Name].Label, byID[t.Name].Description
			if t.Label == "" {
				t.Label = t.Name
			}
			topics[i] = t
		}
		d.Topics = topics
	}
}

// Topic is one checkbox.
type Topic struct {
	Name        string // the topic's id, the form's value
	Label       string // in the page's language; the id if the campaign has none
	Description string // what the topic brings, in the page's language, or ""
	Checked     bool
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
	// strict makes a broken campaign override an error instead of a
	// fallback to the default: what validate and preview want.
	strict bool

	mu      sync.RWMutex
	tmpls   map[pageKey]*pageTmpl
	statics map[staticKey]staticPage
	results map[resultKey][]byte
	senders map[string][2]string // campaign From: display name, address

	bufs sync.Pool
}

type pageKey struct{ dir, page, locale, def string }

type pageTmpl struct {
	t    *template.Template
	lang string
	// builtin: layout and page are the embedded defaults, whose result
	// page shows the answer's time to the minute (see result).
	builtin bool
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
	// topicChange: the landing page as a confirmed recipient sees it
	// (their topics to change); its wording differs.
	topicChange bool
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
		results:  make(map[resultKey][]byte),
		senders:  make(map[string][2]string),
	}
	p.bufs.New = func() any { return new(bytes.Buffer) }
	// Parse every default now: a broken default fails at start, not on a
	// recipient's click, and the first requests find warm caches.
	for _, page := range []string{pageLanding, pageResult, pageUnsubscribe, pageError} {
		for _, loc := range locale.Default().Locales() {
			if _, err := p.lookup("", page, loc, ""); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// lookup returns the parsed template for a page in a locale, reading the
// campaign's override directory dir first; def is the campaign's default
// locale. Overrides are read once; a changed override needs a restart.
func (p *pageSet) lookup(dir, page, loc, def string) (*pageTmpl, error) {
	key := pageKey{dir, page, loc, def}
	p.mu.RLock()
	t, ok := p.tmpls[key]
	p.mu.RUnlock()
	if ok {
		return t, nil
	}
	t, err := p.parse(dir, page, loc, def)
	if err != nil && dir != "" && !p.strict {
		p.log.Error("campaign page template unusable; using the default", "dir", dir, "page", page, "locale", loc, "err", err)
		t, err = p.parse("", page, loc, def)
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

// parse picks, for each locale of the chain (de-AT, de, the campaign's
// default, en), the campaign's page written out in that locale
// (PAGE.LOCALE.html), else the language-neutral page (PAGE.html, the
// campaign's or the default) if the catalog has the language.
func (p *pageSet) parse(dir, page, loc, def string) (*pageTmpl, error) {
	layout, layoutName, _, err := p.read(dir, "layout.html")
	if err != nil {
		return nil, err
	}
	var src []byte
	var name, lang string
	for _, l := range locale.Chain(loc, def) {
		if dir != "" {
			b, n, found, err := p.read(dir, page+"."+l+".html")
			if err != nil {
				return nil, err
			}
			if found && n != "" {
				src, name, lang = b, n, l
				break
			}
		}
		if locale.Default().Has(l) {
			b, n, found, err := p.read(dir, page+".html")
			if err != nil {
				return nil, err
			}
			if found {
				src, name, lang = b, n, l
				break
			}
		}
	}
	if src == nil {
		return nil, fmt.Errorf("page %s: no template for locale %q", page, loc)
	}
	// Templates are named after their files so that errors name the file
	// and line to fix.
	t, err := template.New(layoutName).Funcs(p.funcs).Parse(string(layout))
	if err != nil {
		return nil, templateError(err)
	}
	if _, err := t.New(name).Parse(string(src)); err != nil {
		return nil, templateError(err)
	}
	const builtinName = "default pages/"
	builtin := strings.HasPrefix(layoutName, builtinName) && strings.HasPrefix(name, builtinName)
	return &pageTmpl{t: t, lang: lang, builtin: builtin}, nil
}

// templateErrorRE matches the position html/template puts in its errors:
// "html/template: NAME:LINE:COL: message" or "template: NAME:LINE: message".
var templateErrorRE = regexp.MustCompile(`^(?:html/)?template: (.+?):(\d+):(?:\d+:)? (.*)$`)

// templateError rewrites a template error as "FILE:LINE: message".
func templateError(err error) error {
	msg := err.Error()
	if m := templateErrorRE.FindStringSubmatch(msg); m != nil {
		msg = m[1] + ":" + m[2] + ": " + m[3]
	}
	return repermit.Errorf(repermit.EINVALID, "%s", msg)
}

// read returns a template file from the override directory dir if it is
// there (name its path), else from the defaults (name "default
// pages/NAME"); found is false when neither has it. A default never
// stands for a locale's own file: name is "" when name has a locale
// (PAGE.LOCALE.html) and only the defaults were searched.
func (p *pageSet) read(dir, file string) (b []byte, name string, found bool, err error) {
	if dir != "" {
		path := filepath.Join(dir, "pages", file)
		// Not os.ReadFile: a FIFO in the directory would block validate
		// in open(2), past Ctrl-C.
		b, err := repermit.ReadFile(path)
		switch {
		case err == nil:
			return b, path, true, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, "", false, repermit.Errorf(repermit.EINVALID, "read template: %v", err)
		}
		if strings.Count(file, ".") > 1 {
			return nil, "", false, nil
		}
	}
	b, err = fs.ReadFile(p.defaults, file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("read default template %s: %w", file, err)
	}
	return b, "default pages/" + file, true, nil
}

// render executes a page into a fresh buffer, so that a failing template
// gives an error page rather than half a page. The caller returns the
// buffer with release.
func (p *pageSet) render(dir, page, loc string, data *PageData) (*bytes.Buffer, error) {
	c := data.campaign
	if c == nil {
		c = &repermit.Campaign{}
	}
	t, err := p.lookup(dir, page, loc, c.DefaultLocale)
	if err != nil {
		return nil, err
	}
	data.localize(locale.Default().Words(c, t.lang))
	buf := p.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	if err := t.t.ExecuteTemplate(buf, "layout", data); err != nil {
		p.release(buf)
		return nil, templateError(err)
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
	key := staticKey{c.ID, c.Seq, page, locale, data.Preselect, data.Root, data.TopicChange}
	p.mu.RLock()
	sp, ok := p.statics[key]
	p.mu.RUnlock()
	if ok {
		return sp, nil
	}
	return p.renderStatic(key, c, page, locale, data)
}

// renderStatic renders and keeps a page for static. It is apart so that
// only a miss moves data to the heap (render takes its address): in
// static itself, every landing page and answer allocated its copy.
func (p *pageSet) renderStatic(key staticKey, c *repermit.Campaign, page, locale string, data PageData) (staticPage, error) {
	var sp staticPage
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
// and emphasised, never a word, so it is left out. With data.TopicChange
// it is the landing page a confirmed recipient changes topics on, less
// their own answer and ticks (their data, not our words). The page itself
// is returned too, to be kept verbatim; it must not be modified.
func (p *pageSet) wordingHash(c *repermit.Campaign, page, locale string, data PageData) (string, []byte, error) {
	data.Preselect = ""
	sp, err := p.static(c, page, locale, data)
	return sp.sum, sp.body, err
}

// resultKey names a result page of the built-in templates: everything the
// page shows, with the answer's time to the minute, as the page writes it.
type resultKey struct {
	campaign string
	seq      uint32
	locale   string
	root     string
	state    repermit.State
	topics   string // the answer's topics joined by NUL, in their order
	changed  bool
	minute   int64 // the answer's time, whole minutes since 1970
}

// result returns the result page of an answer. The built-in page depends
// only on what resultKey holds, so it is rendered once and kept: every
// answer of a campaign given in the same minute, with the same topics, in
// the same language, gets the same bytes, and a burst of answers after a
// mailing costs one rendering a minute instead of one each. A campaign's
// own result page may show anything of PageData, so it is rendered every
// time. data must hold campaignData and the answer. The body must not be
// modified; done hands back what it used.
func (p *pageSet) result(c *repermit.Campaign, loc string, data *PageData) (body []byte, done func(), err error) {
	t, err := p.lookup(c.TemplatesDir, pageResult, loc, c.DefaultLocale)
	if err != nil {
		return nil, nil, err
	}
	if !t.builtin || data.Answer == nil {
		buf, err := p.render(c.TemplatesDir, pageResult, loc, data)
		if err != nil {
			return nil, nil, err
		}
		return buf.Bytes(), func() { p.release(buf) }, nil
	}
	a := data.Answer
	key := resultKey{
		campaign: c.ID, seq: c.Seq, locale: loc, root: data.Root, state: a.State,
		topics: strings.Join(a.Topics, "\x00"), changed: data.Changed, minute: a.At.Truncate(time.Minute).Unix() / 60,
	}
	p.mu.RLock()
	body, ok := p.results[key]
	p.mu.RUnlock()
	if ok {
		return body, func() {}, nil
	}
	buf, err := p.render(c.TemplatesDir, pageResult, loc, data)
	if err != nil {
		return nil, nil, err
	}
	body = bytes.Clone(buf.Bytes())
	p.release(buf)
	p.mu.Lock()
	if len(p.results) >= maxCached {
		// Keys of past minutes are of no more use.
		clear(p.results)
	}
	p.results[key] = body
	p.mu.Unlock()
	return body, func() {}, nil
}
