package mailer

import (
	"bytes"
	"fmt"
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

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/templates"
)

// DefaultLocale is the last fallback of every recipient locale; the embedded
// templates always provide it.
const DefaultLocale = "en"

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
	// Sender is the display name of Campaign.From, or its address if it has
	// none.
	Sender string
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
	// Deadline is the moment answers stop counting, in the deadline's time
	// zone, written for the recipient's locale.
	Deadline string
	Topics   []string
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
		Deadline:       formatDeadline(c.Deadline, r.Locale),
		Topics:         c.Topics,
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

// formatDeadline writes the exact moment the deadline falls on, with its
// UTC offset. A date alone would either promise more time than there is
// (the deadline's day, which ends after the deadline) or, for a deadline
// less than a day after the mail, name a day that has passed. Languages
// without a known format get ISO 8601 rather than English words in a
// foreign text.
func formatDeadline(deadline time.Time, locale string) string {
	if deadline.IsZero() {
		return ""
	}
	offset := "UTC" + deadline.Format("-07:00")
	lang, _, _ := strings.Cut(localeChain(locale)[0], "-")
	switch lang {
	case "en":
		return deadline.Format("January 2, 2006 at 15:04") + " (" + offset + ")"
	case "de":
		months := [...]string{"Januar", "Februar", "März", "April", "Mai", "Juni",
			"Juli", "August", "September", "Oktober", "November", "Dezember"}
		return fmt.Sprintf("%d. %s %d um %s Uhr (%s)", deadline.Day(), months[deadline.Month()-1], deadline.Year(), deadline.Format("15:04"), offset)
	}
	return deadline.Format("2006-01-02 15:04") + " (" + offset + ")"
}

// localeChain returns the locales to try for a recipient, most specific
// first: "de-AT" gives de-at, de, en.
func localeChain(locale string) []string {
	l := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(locale), "_", "-"))
	var chain []string
	for l != "" {
		chain = append(chain, l)
		i := strings.LastIndexByte(l, '-')
		if i < 0 {
			break
		}
		l = l[:i]
	}
	if !slices.Contains(chain, DefaultLocale) {
		chain = append(chain, DefaultLocale)
	}
	return chain
}

// templateName matches KIND.LOCALE.EXT.
var templateName = regexp.MustCompile(`^(initial|reminder)\.([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*)\.(txt|html)$`)

// Templates holds the parsed mail templates of one campaign. It is safe for
// concurrent use.
type Templates struct {
	text map[string]*texttemplate.Template // key "initial.de"
	html map[string]*htmltemplate.Template
}

func templateFuncs() map[string]any {
	return map[string]any{"join": strings.Join}
}

// LoadTemplates parses the embedded default templates, overridden file by
// file by those in dir; dir "" means the defaults alone. Other files in dir
// are ignored, except *.txt and *.html whose names do not follow
// KIND.LOCALE.txt|html, which are refused so that a misspelt file does not go
// unnoticed.
func LoadTemplates(dir string) (*Templates, error) {
	sources := make(map[string]string) // file name -> display path
	contents := make(map[string][]byte)
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
		sources[e.Name()] = "default " + e.Name()
		contents[e.Name()] = b
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
					"%s: unexpected template name; want KIND.LOCALE%s with KIND initial or reminder", path, ext)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, repermit.Errorf(repermit.EINVALID, "templates: %v", err)
			}
			sources[name] = path
			contents[name] = b
		}
	}

	t := &Templates{
		text: make(map[string]*texttemplate.Template),
		html: make(map[string]*htmltemplate.Template),
	}
	for name, b := range contents {
		m := templateName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		key := m[1] + "." + localeChain(m[2])[0]
		// The template is named after its path so that parse and execution
		// errors point at the file a user has to fix.
		src := sources[name]
		switch m[3] {
		case "txt":
			tt, err := texttemplate.New(src).Funcs(templateFuncs()).Option("missingkey=zero").Parse(string(b))
			if err != nil {
				return nil, repermit.Errorf(repermit.EINVALID, "%v", err)
			}
			t.text[key] = tt
		case "html":
			ht, err := htmltemplate.New(src).Funcs(templateFuncs()).Option("missingkey=zero").Parse(string(b))
			if err != nil {
				return nil, repermit.Errorf(repermit.EINVALID, "%v", err)
			}
			t.html[key] = ht
		}
	}
	for _, kind := range []string{"initial", "reminder"} {
		if t.text[kind+"."+DefaultLocale] == nil {
			return nil, fmt.Errorf("load templates: no %s.%s.txt among the defaults", kind, DefaultLocale)
		}
	}
	return t, nil
}

// Check renders every template with sample data and fails, naming the file,
// if an HTML template has no text part beside it, a template does not render,
// or its output lacks the confirm link.
func (t *Templates) Check() error {
	for _, key := range sortedKeys(t.html) {
		if t.text[key] == nil {
			return repermit.Errorf(repermit.EINVALID, "%s: no text part; add %s.txt", t.html[key].Name(), key)
		}
	}
	for _, key := range sortedKeys(t.text) {
		kind, locale, _ := strings.Cut(key, ".")
		d := sampleData(locale)
		k := Initial
		if kind == "reminder" {
			k = Reminder(1)
		}
		parts, err := t.render(d, k)
		if err != nil {
			return err
		}
		if !strings.Contains(parts.text, d.ConfirmURL) {
			return repermit.Errorf(repermit.EINVALID, "%s: no confirm link; use {{.ConfirmYesURL}} or {{.ConfirmURL}}", t.text[key].Name())
		}
		if ht := t.html[key]; ht != nil && !strings.Contains(parts.html, d.ConfirmURL) {
			return repermit.Errorf(repermit.EINVALID, "%s: no confirm link; use {{.ConfirmYesURL}} or {{.ConfirmURL}}", ht.Name())
		}
		if strings.TrimSpace(parts.subject) == "" {
			return repermit.Errorf(repermit.EINVALID, "%s: the subject renders empty", t.text[key].Name())
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sampleData(locale string) Data {
	c := &repermit.Campaign{
		ID:             "sample",
		From:           "Sample Sender <news@sample.invalid>",
		Subject:        "Do you still want our mail?",
		ConfirmBaseURL: "https://consent.sample.invalid",
		Deadline:       time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
		Topics:         []string{"news", "events"},
	}
	r := &repermit.Recipient{
		Campaign: c.ID, Email: "someone@sample.invalid", Name: "Sam Sample", Locale: locale,
		Extra: map[string]string{},
	}
	return NewData(c, r, c.ConfirmBaseURL+"/c/SAMPLETOKEN", c.ConfirmBaseURL+"/u/SAMPLETOKEN")
}

// rendered is a mail's text before it becomes MIME.
type rendered struct {
	subject string
	text    string
	html    string // empty when the locale has no HTML template
	locale  string
}

// render picks the most specific locale that has a text template for the
// kind and renders subject, text and, if present, HTML from that locale, so
// that the parts of one mail never mix languages.
func (t *Templates) render(d Data, kind Kind) (rendered, error) {
	locale := ""
	if d.Recipient != nil {
		locale = d.Recipient.Locale
	}
	var out rendered
	var tt *texttemplate.Template
	for _, l := range localeChain(locale) {
		if tt = t.text[kind.template()+"."+l]; tt != nil {
			out.locale = l
			break
		}
	}
	if tt == nil {
		return out, fmt.Errorf("render %s: no template", kind)
	}
	var buf bytes.Buffer
	if st := tt.Lookup("subject"); st != nil {
		if err := st.Execute(&buf, d); err != nil {
			return out, repermit.Errorf(repermit.EINVALID, "%v", err)
		}
		out.subject = buf.String()
	} else if d.Campaign != nil {
		out.subject = d.Campaign.Subject
		if kind > Initial {
			out.subject = "Reminder: " + out.subject
		}
	}
	// A subject from a template may span lines; a header may not.
	out.subject = strings.Join(strings.Fields(out.subject), " ")
	d.Subject = out.subject

	buf.Reset()
	if err := tt.Execute(&buf, d); err != nil {
		return out, repermit.Errorf(repermit.EINVALID, "%v", err)
	}
	out.text = buf.String()

	if ht := t.html[kind.template()+"."+out.locale]; ht != nil {
		buf.Reset()
		if err := ht.Execute(&buf, d); err != nil {
			return out, repermit.Errorf(repermit.EINVALID, "%v", err)
		}
		out.html = buf.String()
	}
	return out, nil
}
