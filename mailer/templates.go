package mailer

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	htmltemplate "html/template"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode/utf8"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/templates"
)

// Kind is which mail of a campaign a recipient gets: the initial ask or a
// numbered reminder.
type Kind int

// Initial is the first mail of a campaign.
const Initial Kind = 0

// Reminder returns the kind of reminder step k, counted from 1.
func Reminder(k int) Kind { return Kind(k) }

// Step returns the reminder step, 0 for the initial mail.
func (k Kind) Step() int { return int(k) }

// String returns "initial" or "reminderK"; it is part of the Message-ID.
func (k Kind) String() string {
	if k <= Initial {
		return "initial"
	}
	return fmt.Sprintf("reminder%d", int(k))
}

// template returns the template kind, shared by all reminder steps.
func (k Kind) template() string {
	if k <= Initial {
		return "initial"
	}
	return "reminder"
}

// Data is what a mail template sees.
type Data struct {
	Campaign  *repermit.Campaign
	Recipient *repermit.Recipient
	// Lang is the locale the mail is written in, for <html lang>; set while
	// rendering.
	Lang string
	// Sender is the display name of Campaign.From, or its address if it has
	// none.
	Sender string
	// ListName is what the recipient would keep getting, in their language;
	// set while rendering.
	ListName string
	// ConfirmURL leads to the landing page; ConfirmYesURL and ConfirmNoURL
	// preselect an answer there. None of them changes anything on GET.
	ConfirmURL    string
	ConfirmYesURL string
	ConfirmNoURL  string
	// Subject is the mail's subject, set while rendering (empty inside the
	// subject template itself).
	Subject string
	// UnsubscribeURL is the List-Unsubscribe target.
	UnsubscribeURL string
	// Deadline is the moment answers stop counting, in the campaign's time
	// zone, written for the recipient's locale; set while rendering.
	Deadline string
	// Topics are the campaign's topic labels in the recipient's language
	// (the ids where the campaign gives none); TopicDetails adds what each
	// brings. Both are set while rendering.
	Topics       []string
	TopicDetails []locale.Topic
	// Controller is who is responsible for the recipient's data.
	Controller repermit.Controller

	words *locale.Words
}

// T returns the message key of the mail's language with the campaign's
// values and the name/value pairs of args filled in; see locale.Words.T.
func (d Data) T(key string, args ...any) (string, error) {
	if d.words == nil {
		return "", fmt.Errorf("message %q: no language chosen", key)
	}
	return d.words.T(key, args...)
}

// Time writes a moment in the mail's language and the campaign's time zone.
func (d Data) Time(t time.Time) string {
	if d.words == nil {
		return t.Format(time.RFC3339)
	}
	return d.words.Time(t)
}

// NewData fills Data for one recipient from the links the caller signed.
func NewData(c *repermit.Campaign, r *repermit.Recipient, confirmURL, unsubscribeURL string) Data {
	sep := "?"
	if strings.Contains(confirmURL, "?") {
		sep = "&"
	}
	return Data{
		Campaign:       c,
		Recipient:      r,
		Sender:         senderName(c.From),
		ConfirmURL:     confirmURL,
		ConfirmYesURL:  confirmURL + sep + "answer=yes",
		ConfirmNoURL:   confirmURL + sep + "answer=no",
		UnsubscribeURL: unsubscribeURL,
		Controller:     c.Controller,
	}
}

// localize fills the fields of d that depend on the language.
func (d *Data) localize(w *locale.Words) {
	d.words = w
	d.Lang = w.Locale
	d.ListName = w.Var("list")
	d.Deadline = w.Var("deadline")
	d.TopicDetails = w.Topics()
	d.Topics = make([]string, len(d.TopicDetails))
	for i, t := range d.TopicDetails {
		d.Topics[i] = t.Label
	}
}

func senderName(from string) string {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return from
	}
	if a.Name != "" {
		return a.Name
	}
	return a.Address
}

// templateName matches KIND.txt|html (the language-neutral form, which
// takes its words from the language files) and KIND.LOCALE.txt|html (one
// language, written out).
var templateName = regexp.MustCompile(`^(initial|reminder)(?:\.([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*))?\.(txt|html)$`)

// partialName matches the pieces the default templates share ({{template
// "ask" .}}); overrides may use them too.
var partialName = regexp.MustCompile(`^[a-z]+\.(txt|html)$`)

// Templates holds the parsed mail templates of one campaign. It is safe for
// concurrent use.
type Templates struct {
	text map[string]*texttemplate.Template // key "initial" (any language) or "initial.de"
	html map[string]*htmltemplate.Template
	cat  *locale.Catalog
	// custom is set when a campaign's directory overrides a default
	// template; Build then renders every mail in full (see prerender).
	custom bool
	pre    prerenderCache
}

func templateFuncs() map[string]any {
	return map[string]any{"join": strings.Join}
}

// LoadTemplates parses the embedded default templates, overridden file by
// file by those in dir; dir "" means the defaults alone. Other files in dir
// are ignored, except *.txt and *.html whose names do not follow
// KIND.txt|html or KIND.LOCALE.txt|html, which are refused so that a
// misspelt file does not go unnoticed.
func LoadTemplates(dir string) (*Templates, error) {
	type source struct {
		name string // display path, part of every error message
		b    []byte
	}
	sources := make(map[string]source) // file name -> source
	custom := false
	partials := make(map[string][]source)
	defaults := templates.Mail()
	entries, err := fs.ReadDir(defaults, ".")
	if err != nil {
		return nil, fmt.Errorf("read default mail templates: %w", err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(defaults, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read default mail template %s: %w", e.Name(), err)
		}
		src := source{"default mail/" + e.Name(), b}
		if templateName.MatchString(e.Name()) {
			sources[e.Name()] = src
		} else if m := partialName.FindStringSubmatch(e.Name()); m != nil {
			partials[m[1]] = append(partials[m[1]], src)
		}
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, repermit.Errorf(repermit.EINVALID, "templates: %v", err)
		}
		for _, e := range entries {
			name := e.Name()
			ext := filepath.Ext(name)
			if e.IsDir() || (ext != ".txt" && ext != ".html") {
				continue
			}
			path := filepath.Join(dir, name)
			if !templateName.MatchString(name) {
				return nil, repermit.Errorf(repermit.EINVALID,
					"%s: unexpected template name; want KIND.LOCALE%s or KIND%s with KIND initial or reminder", path, ext, ext)
			}
			// Not os.ReadFile: a FIFO in the directory would block validate
			// in open(2), past Ctrl-C.
			b, err := repermit.ReadFile(path)
			if err != nil {
				return nil, repermit.Errorf(repermit.EINVALID, "templates: %v", err)
			}
			sources[name] = source{path, b}
			custom = true
		}
	}

	t := &Templates{
		text:   make(map[string]*texttemplate.Template),
		html:   make(map[string]*htmltemplate.Template),
		cat:    locale.Default(),
		custom: custom,
	}
	for name, src := range sources {
		m := templateName.FindStringSubmatch(name)
		key := m[1]
		if m[2] != "" {
			key += "." + locale.Normalize(m[2])
		}
		// The template is named after its path so that parse and execution
		// errors point at the file a user has to fix.
		switch m[3] {
		case "txt":
			tt, err := texttemplate.New(src.name).Funcs(templateFuncs()).Option("missingkey=zero").Parse(string(src.b))
			if err != nil {
				return nil, templateError(err)
			}
			for _, p := range partials["txt"] {
				if tt.Lookup(p.name) == nil {
					if _, err := tt.New(p.name).Parse(string(p.b)); err != nil {
						return nil, templateError(err)
					}
				}
			}
			t.text[key] = tt
		case "html":
			ht, err := htmltemplate.New(src.name).Funcs(templateFuncs()).Option("missingkey=zero").Parse(string(src.b))
			if err != nil {
				return nil, templateError(err)
			}
			for _, p := range partials["html"] {
				if _, err := ht.New(p.name).Parse(string(p.b)); err != nil {
					return nil, templateError(err)
				}
			}
			t.html[key] = ht
		}
	}
	for _, kind := range []string{"initial", "reminder"} {
		if t.text[kind] == nil {
			return nil, fmt.Errorf("load templates: no %s.txt among the defaults", kind)
		}
	}
	return t, nil
}

// templateErrorRE matches the position text/template and html/template
// put in their errors: "template: NAME:LINE:COL: message" or "template:
// NAME:LINE: message".
var templateErrorRE = regexp.MustCompile(`^(?:html/)?template: (.+?):(\d+):(?:\d+:)? (.*)$`)

// templateError rewrites a template error as "FILE:LINE: message", the
// form editors jump to, with the EINVALID code of bad input.
func templateError(err error) error {
	msg := err.Error()
	if m := templateErrorRE.FindStringSubmatch(msg); m != nil {
		msg = m[1] + ":" + m[2] + ": " + m[3]
	}
	return repermit.Errorf(repermit.EINVALID, "%s", msg)
}

// Check renders every template with sample data in every language the
// catalog and the overrides have, and fails, naming the file, if an HTML
// template has no text part beside it, a template does not render, or its
// output lacks the confirm link.
func (t *Templates) Check() error {
	c := sampleCampaign()
	locales := t.cat.Locales()
	for key := range t.text {
		if _, loc, ok := strings.Cut(key, "."); ok && !slices.Contains(locales, loc) {
			locales = append(locales, loc)
		}
	}
	slices.Sort(locales)
	return t.CheckCampaign(c, locales)
}

// CheckCampaign renders the initial mail and a reminder of campaign c for
// a sample recipient of each locale, as validate does before a launch. A
// campaign with a controller must name it in both parts of every mail, as
// the default templates' footer does: an override that drops the footer
// is refused.
func (t *Templates) CheckCampaign(c *repermit.Campaign, locales []string) error {
	for _, key := range sortedKeys(t.html) {
		if t.text[key] == nil {
			return repermit.Errorf(repermit.EINVALID, "%s: no text part; add %s.txt", t.html[key].Name(), key)
		}
	}
	probe := *c
	if c.Controller.Name != "" {
		probe.Controller = c.Controller.Probe()
	}
	for _, loc := range locales {
		for _, k := range []Kind{Initial, Reminder(1)} {
			d := sampleData(&probe, loc)
			parts, err := t.render(d, k)
			if err != nil {
				return err
			}
			if !strings.Contains(parts.text, d.ConfirmURL) {
				return repermit.Errorf(repermit.EINVALID, "%s: no confirm link; use {{.ConfirmYesURL}} or {{.ConfirmURL}}", parts.textName)
			}
			if parts.html != "" && !strings.Contains(parts.html, d.ConfirmURL) {
				return repermit.Errorf(repermit.EINVALID, "%s: no confirm link; use {{.ConfirmYesURL}} or {{.ConfirmURL}}", parts.htmlName)
			}
			if strings.TrimSpace(parts.subject) == "" {
				return repermit.Errorf(repermit.EINVALID, "%s: the subject renders empty", parts.textName)
			}
			if c.Controller.Name == "" {
				continue
			}
			if m := probe.Controller.Missing(parts.text); m != "" {
				return noController(parts.textName, m)
			}
			if m := probe.Controller.Missing(html.UnescapeString(parts.html)); parts.html != "" && m != "" {
				return noController(parts.htmlName, m)
			}
		}
	}
	return nil
}

func noController(file, missing string) error {
	return repermit.Errorf(repermit.EINVALID,
		"%s: does not show the controller's %s; every mail must say who is asking (GDPR Art. 13): keep the default template's footer ({{.T \"footer.controller\"}}, {{.Controller.Contact}}, {{.Controller.PrivacyURL}})",
		file, missing)
}

// Render renders the mail of the given kind as the recipient would get
// it, for previews: subject, text part and HTML part ("" if none), and the
// locale it is written in.
func (t *Templates) Render(d Data, kind Kind) (subject, text, html, lang string, err error) {
	r, err := t.render(d, kind)
	return r.subject, r.text, r.html, r.locale, err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sampleCampaign() *repermit.Campaign {
	return &repermit.Campaign{
		ID:             "sample",
		From:           "Sample Sender <news@sample.invalid>",
		Subject:        "Do you still want our mail?",
		ConfirmBaseURL: "https://consent.sample.invalid",
		Deadline:       time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
		Topics:         []string{"news", "events"},
		Controller: repermit.Controller{
			Name: "Sample Ltd", Address: "1 Sample Street, Sampleton", Contact: "privacy@sample.invalid",
			PrivacyURL: "https://sample.invalid/privacy", DPO: "dpo@sample.invalid",
		},
	}
}

// SampleData returns the data of a made-up recipient of campaign c in
// locale loc, with links to token SAMPLETOKEN: what validate and preview
// render.
func SampleData(c *repermit.Campaign, loc string) Data { return sampleData(c, loc) }

func sampleData(c *repermit.Campaign, loc string) Data {
	r := &repermit.Recipient{
		Campaign: c.ID, Email: "someone@sample.invalid", Name: "Sam Sample", Locale: loc,
		Extra: map[string]string{},
	}
	base := c.ConfirmBaseURL
	if base == "" {
		base = "https://consent.sample.invalid"
	}
	return NewData(c, r, base+"/c/SAMPLETOKEN", base+"/u/SAMPLETOKEN")
}

// rendered is a mail's text before it becomes MIME.
type rendered struct {
	subject  string
	text     string
	html     string // empty when the locale has no HTML template
	locale   string
	textName string // the files rendered, for messages
	htmlName string
}

// pick returns the template key and the locale to write in: for each
// locale of the recipient's chain (de-AT, de, the campaign's default, en),
// a campaign's template written out in that locale, else the
// language-neutral template if the catalog has the language. The text and
// HTML parts of one mail come from the same locale, so that they never
// mix languages.
func (t *Templates) pick(d Data, kind Kind) (key, loc string) {
	recipient, def := "", ""
	if d.Recipient != nil {
		recipient = d.Recipient.Locale
	}
	if d.Campaign != nil {
		def = d.Campaign.DefaultLocale
	}
	for _, l := range locale.Chain(recipient, def) {
		if t.text[kind.template()+"."+l] != nil {
			return kind.template() + "." + l, l
		}
		if t.cat.Has(l) {
			return kind.template(), l
		}
	}
	return kind.template(), locale.Fallback
}

// render renders subject, text and, if present, HTML in the locale pick
// chooses.
func (t *Templates) render(d Data, kind Kind) (rendered, error) {
	var out rendered
	if d.Campaign == nil {
		return out, errors.New("render: no campaign")
	}
	key, loc := t.pick(d, kind)
	out.locale = loc
	d.localize(t.cat.Words(d.Campaign, loc))
	tt := t.text[key]
	out.textName = tt.Name()
	var buf bytes.Buffer
	if st := tt.Lookup("subject"); st != nil {
		if err := st.Execute(&buf, d); err != nil {
			return out, templateError(err)
		}
		out.subject = buf.String()
	} else {
		out.subject = d.words.Subject(kind > Initial)
	}
	// A subject from a template may span lines; a header may not.
	out.subject = strings.Join(strings.Fields(out.subject), " ")
	d.Subject = out.subject

	buf.Reset()
	if err := tt.Execute(&buf, d); err != nil {
		return out, templateError(err)
	}
	out.text = Wrap(buf.String(), wrapWidth)

	ht := t.html[key]
	if ht == nil && key != kind.template() && t.cat.Has(loc) {
		// A campaign's text part for a language we speak keeps our HTML.
		ht = t.html[kind.template()]
	}
	if ht != nil {
		out.htmlName = ht.Name()
		buf.Reset()
		if err := ht.Execute(&buf, d); err != nil {
			return out, templateError(err)
		}
		out.html = buf.String()
	}
	return out, nil
}

// wrapWidth is where text parts are wrapped: under the 78 characters RFC
// 5322 recommends, with room for a reply's "> ".
const wrapWidth = 76

// Wrap breaks every line of s longer than width at its last space before
// width, indenting the continuation as the line ("  - " items hang under
// their text). A word longer than width, such as a link, stays whole on a
// line of its own.
func Wrap(s string, width int) string {
	lines := strings.Split(s, "\n")
	out := make([]string, 0, len(lines))
	for _, line := range lines {
		if line == "-- " {
			out = append(out, line) // the signature separator keeps its space
			continue
		}
		line = strings.TrimRight(line, " \t")
		if utf8.RuneCountInString(line) <= width {
			out = append(out, line)
			continue
		}
		indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
		hang := indent
		if strings.HasPrefix(line[len(indent):], "- ") {
			hang += "  "
		}
		cur, n := indent, 0 // n: words on cur
		// Only ASCII spaces break a line: a no-break space (French « … »,
		// "23 h 59") keeps its words together.
		for _, w := range strings.Split(strings.TrimLeft(line, " "), " ") {
			if w == "" {
				continue
			}
			if n > 0 && utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(w) > width {
				out = append(out, cur)
				cur, n = hang, 0
			}
			if n > 0 {
				cur += " "
			}
			cur += w
			n++
		}
		out = append(out, cur)
	}
	return strings.Join(out, "\n")
}
