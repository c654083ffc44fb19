// Package locale picks the language a recipient reads and holds the
// strings of the default mails and pages in each language repermit speaks.
//
// A locale is a lower-case BCP 47 tag ("de", "de-at"). A recipient's locale
// falls back from the most specific to the least: de-AT, de, the
// campaign's default locale, en. Recipients without a locale in the CSV
// get their browser's preference on the pages (Accept-Language, matched
// with golang.org/x/text/language) and the campaign's default locale in
// mail, which no browser is asked about.
package locale

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"

	"github.com/repermit/repermit/templates"
)

// Fallback is the last locale of every chain; the catalog always has it.
const Fallback = "en"

// Catalog holds the strings of every language, one file per language.
// It is safe for concurrent use.
type Catalog struct {
	msgs  map[string]map[string]string // locale -> key -> text
	names []string                     // sorted

	mu       sync.Mutex
	matchers map[string]language.Matcher // by joined candidate list
}

var defaultCatalog = sync.OnceValues(func() (*Catalog, error) { return Load(templates.Locales()) })

// Default returns the catalog of the embedded strings. A broken embedded
// file is a programming error that the package's tests catch; Default
// panics on it.
func Default() *Catalog {
	c, err := defaultCatalog()
	if err != nil {
		panic(err)
	}
	return c
}

// Load reads LOCALE.yaml files from fsys: each a flat mapping of message
// key to text. It refuses a set of files in which any file lacks a key
// another has, uses other {placeholders} in a message than en.yaml does, or
// is not a mapping of strings, naming the file and line.
func Load(fsys fs.FS) (*Catalog, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	c := &Catalog{msgs: make(map[string]map[string]string), matchers: make(map[string]language.Matcher)}
	lines := make(map[string]map[string]int)
	for _, name := range names {
		loc := Normalize(strings.TrimSuffix(name, ".yaml"))
		if loc == "" || loc+".yaml" != name {
			return nil, fmt.Errorf("%s: the file name must be a lower-case locale like de.yaml or de-at.yaml", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		msgs, ln, err := parseFile(name, b)
		if err != nil {
			return nil, err
		}
		c.msgs[loc], lines[loc] = msgs, ln
		c.names = append(c.names, loc)
	}
	en, ok := c.msgs[Fallback]
	if !ok {
		return nil, fmt.Errorf("no %s.yaml: every catalog needs the fallback language", Fallback)
	}
	all := make(map[string]bool)
	for _, m := range c.msgs {
		for k := range m {
			all[k] = true
		}
	}
	for _, loc := range c.names {
		m := c.msgs[loc]
		for _, k := range sortedKeys(all) {
			v, ok := m[k]
			if !ok {
				return nil, fmt.Errorf("%s.yaml: no message %q (another language has it)", loc, k)
			}
			if ref, ok := en[k]; ok && !slices.Equal(Placeholders(v), Placeholders(ref)) {
				return nil, fmt.Errorf("%s.yaml:%d: %s uses %v, en.yaml uses %v", loc, lines[loc][k], k, Placeholders(v), Placeholders(ref))
			}
		}
		if n := len(strings.Split(m[keyMonths], ",")); n != 12 {
			return nil, fmt.Errorf("%s.yaml:%d: %s lists %d months, not 12", loc, lines[loc][keyMonths], keyMonths, n)
		}
	}
	return c, nil
}

const (
	keyMonths   = "date.months"
	keyDateTime = "date.datetime"
)

func parseFile(name string, b []byte) (map[string]string, map[string]int, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("%s: must be a mapping of message keys to text", name)
	}
	root := doc.Content[0]
	msgs := make(map[string]string, len(root.Content)/2)
	lines := make(map[string]int, len(root.Content)/2)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" || strings.TrimSpace(v.Value) == "" {
			return nil, nil, fmt.Errorf("%s:%d: %s must be a non-empty text", name, v.Line, k.Value)
		}
		if _, dup := msgs[k.Value]; dup {
			return nil, nil, fmt.Errorf("%s:%d: %s is there twice", name, k.Line, k.Value)
		}
		msgs[k.Value] = strings.TrimSpace(v.Value)
		lines[k.Value] = k.Line
	}
	return msgs, lines, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Locales returns the locales of the catalog, sorted.
func (c *Catalog) Locales() []string { return slices.Clone(c.names) }

// Has reports whether the catalog has the (normalized) locale.
func (c *Catalog) Has(loc string) bool {
	_, ok := c.msgs[loc]
	return ok
}

// Keys returns every message key, sorted.
func (c *Catalog) Keys() []string { return sortedKeys(c.msgs[Fallback]) }

// Message returns the raw text of key in loc.
func (c *Catalog) Message(loc, key string) (string, bool) {
	m, ok := c.msgs[loc]
	if !ok {
		return "", false
	}
	v, ok := m[key]
	return v, ok
}

// Normalize returns a locale in the catalog's form: lower case, "-" as
// separator ("de_AT" → "de-at"), or "" if s is not a language tag.
func Normalize(s string) string {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "_", "-"))
	if s == "" || len(s) > 35 {
		return ""
	}
	for i, part := range strings.Split(s, "-") {
		if part == "" || len(part) > 8 || strings.ContainsFunc(part, func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < '0' || r > '9')
		}) {
			return ""
		}
		if i == 0 && (len(part) < 2 || len(part) > 3 || strings.ContainsAny(part, "0123456789")) {
			return ""
		}
	}
	return s
}

// Chain returns the locales to try for loc, most specific first: loc,
// each shorter prefix of it, the campaign's default locale def and
// Fallback, without repeats. "de-AT" with default "da" gives de-at, de, da,
// en.
func Chain(loc, def string) []string {
	var out []string
	add := func(l string) {
		if l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	for _, l := range Prefixes(loc) {
		add(l)
	}
	add(Normalize(def))
	add(Fallback)
	return out
}

// Prefixes returns loc and each shorter prefix of it: "de-at" gives de-at,
// de.
func Prefixes(loc string) []string {
	var out []string
	for l := Normalize(loc); l != ""; {
		out = append(out, l)
		i := strings.LastIndexByte(l, '-')
		if i < 0 {
			break
		}
		l = l[:i]
	}
	return out
}

// Resolve returns the first locale of Chain(loc, def) the catalog has.
func (c *Catalog) Resolve(loc, def string) string {
	for _, l := range Chain(loc, def) {
		if c.Has(l) {
			return l
		}
	}
	return Fallback
}

// Known reports whether a recipient's locale reaches a catalog language
// before the defaults: "de-AT" does, "pt-BR" does not.
func (c *Catalog) Known(loc string) bool {
	return slices.ContainsFunc(Prefixes(loc), c.Has)
}

// Match picks the locale among candidates that a browser's Accept-Language
// header prefers, honouring q-values and closeness of languages ("de-CH"
// matches de, "nb" matches da only if nothing better is offered). It
// reports false when the header is empty, unreadable or matches none.
func (c *Catalog) Match(acceptLanguage string, candidates []string) (string, bool) {
	if strings.TrimSpace(acceptLanguage) == "" || len(candidates) == 0 {
		return "", false
	}
	if len(acceptLanguage) > 512 {
		// A header longer than any browser sends costs the parser, not us.
		acceptLanguage = acceptLanguage[:512]
		if i := strings.LastIndexByte(acceptLanguage, ','); i > 0 {
			acceptLanguage = acceptLanguage[:i]
		}
	}
	tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(tags) == 0 {
		return "", false
	}
	_, i, conf := c.matcher(candidates).Match(tags...)
	if conf == language.No || i < 0 || i >= len(candidates) {
		return "", false
	}
	return candidates[i], true
}

func (c *Catalog) matcher(candidates []string) language.Matcher {
	key := strings.Join(candidates, ",")
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.matchers[key]; ok {
		return m
	}
	tags := make([]language.Tag, len(candidates))
	for i, l := range candidates {
		tags[i] = language.Make(l)
	}
	m := language.NewMatcher(tags)
	if len(c.matchers) < 256 {
		c.matchers[key] = m
	}
	return m
}

// Placeholders returns the {names} a message uses, sorted, each once.
func Placeholders(msg string) []string {
	var out []string
	for {
		i := strings.IndexByte(msg, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(msg[i:], '}')
		if j < 0 {
			break
		}
		name := msg[i+1 : i+j]
		if isName(name) && !slices.Contains(out, name) {
			out = append(out, name)
		}
		msg = msg[i+j+1:]
	}
	slices.Sort(out)
	return out
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// Expand replaces each {name} in msg by vars(name); a name vars does not
// know is left as it is.
func Expand(msg string, vars func(name string) (string, bool)) string {
	if !strings.Contains(msg, "{") {
		return msg
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(msg[i:], '}')
		if j < 0 {
			break
		}
		name := msg[i+1 : i+j]
		v, ok := "", false
		if isName(name) {
			v, ok = vars(name)
		}
		b.WriteString(msg[:i])
		if ok {
			b.WriteString(v)
		} else {
			b.WriteString(msg[i : i+j+1])
		}
		msg = msg[i+j+1:]
	}
	b.WriteString(msg)
	return b.String()
}

// Printer writes the catalog's messages in one locale.
type Printer struct {
	Locale string
	msgs   map[string]string
}

// Printer returns the printer of a catalog locale, falling back as Resolve
// does for one the catalog lacks.
func (c *Catalog) Printer(loc string) *Printer {
	l := c.Resolve(loc, "")
	return &Printer{Locale: l, msgs: c.msgs[l]}
}

// Text returns the message key with its placeholders filled from vars.
func (p *Printer) Text(key string, vars func(string) (string, bool)) (string, error) {
	msg, ok := p.msgs[key]
	if !ok {
		return "", fmt.Errorf("no message %q in %s", key, path.Join("locales", p.Locale+".yaml"))
	}
	return Expand(msg, vars), nil
}

// DateTime writes a moment as the locale writes a date and time, in the
// time zone tz (nil: the time's own), with its offset from UTC: the same
// words in mail and page, so that "by 31 December" means one thing.
func (p *Printer) DateTime(t time.Time, tz *time.Location) string {
	if t.IsZero() {
		return ""
	}
	if tz != nil {
		t = t.In(tz)
	}
	months := strings.Split(p.msgs[keyMonths], ",")
	month := strings.TrimSpace(months[t.Month()-1])
	s := Expand(p.msgs[keyDateTime], func(name string) (string, bool) {
		switch name {
		case "day":
			return strconv.Itoa(t.Day()), true
		case "month":
			return month, true
		case "year":
			return strconv.Itoa(t.Year()), true
		case "hour":
			return t.Format("15"), true
		case "minute":
			return t.Format("04"), true
		}
		return "", false
	})
	return s + " (" + Offset(t) + ")"
}

// Offset writes the UTC offset of t as "UTC+01:00", or "UTC".
func Offset(t time.Time) string {
	if _, off := t.Zone(); off == 0 {
		return "UTC"
	}
	return "UTC" + t.Format("-07:00")
}

// Foreign returns the phrases of other languages' messages that text
// contains although it should be written in loc: a test's way to find an
// English button on a Danish page. A phrase is a piece of a message
// between placeholders, of at least 8 characters, that loc's messages do
// not contain themselves.
func (c *Catalog) Foreign(text, loc string) []string {
	own := make([]string, 0, len(c.msgs[loc]))
	for _, v := range c.msgs[loc] {
		own = append(own, v)
	}
	ownAll := strings.Join(own, "\n")
	seen := make(map[string]bool)
	var out []string
	for _, l := range c.names {
		if l == loc {
			continue
		}
		for k, v := range c.msgs[l] {
			if k == keyMonths || k == keyDateTime || v == c.msgs[loc][k] {
				continue
			}
			for _, frag := range fragments(v) {
				if len([]rune(frag)) < 8 || seen[frag] || strings.Contains(ownAll, frag) {
					continue
				}
				if strings.Contains(text, frag) {
					seen[frag] = true
					out = append(out, l+": "+frag)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// fragments splits a message at its placeholders.
func fragments(msg string) []string {
	var out []string
	for {
		i := strings.IndexByte(msg, '{')
		j := strings.IndexByte(msg, '}')
		if i < 0 || j < i {
			break
		}
		out = append(out, strings.TrimSpace(msg[:i]))
		msg = msg[j+1:]
	}
	return append(out, strings.TrimSpace(msg))
}
