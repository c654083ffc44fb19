// Package config loads and validates campaign files. Every problem names
// its line, and all problems of a file are reported at once, so that
// marketing ops can fix a file in one round.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/recipients"
)

// File is a loaded, validated campaign file.
type File struct {
	Path string // as given to Load
	// Campaign is resolved: StartAt (default now) and Deadline absolute,
	// Reminders as offsets from StartAt, TemplatesDir absolute.
	Campaign        repermit.Campaign
	RecipientsPath  string // absolute
	SuppressionPath string // absolute, or "" if none
	// Warnings are problems that do not stop a launch, such as a locale
	// no language file exists for.
	Warnings Problems
	// deadlineLine and rateLine are where the deadline and the rate are
	// written (0: not written), for CheckFeasible's problems.
	deadlineLine, rateLine, wavesLine int
	// texts names each per-locale wording by its key ("list_name",
	// "topics.yoga.label") with the line it is on, for CheckLocales.
	texts []namedText
}

type namedText struct {
	key      string
	line     int
	text     repermit.Text
	optional bool // a missing translation is a warning, not an error
}

// Limits of a campaign file.
const (
	maxFileBytes = 1 << 20
	maxTopics    = 20
)

// maxShards is redisstore.MaxShards (config does not import the store).
const maxShards = 256

var nameRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// keys lists the top-level keys of a campaign file.
var keys = []string{
	"id", "from", "subject", "recipients", "suppression", "confirm_base_url",
	"start_at", "deadline", "reminders", "rate", "topics", "templates",
	"retention", "list_unsubscribe_mailto", "min_answer_window", "shards",
	"list_name", "reminder_subject", "default_locale", "timezone", "controller", "waves",
	"webhooks",
}

var webhookKeys = []string{"url", "secret"}

var required = []string{"id", "from", "subject", "recipients", "confirm_base_url", "deadline", "controller"}

var controllerKeys = []string{"name", "address", "contact", "privacy_url", "dpo"}

var topicKeys = []string{"id", "label", "description"}

var rateKeys = []string{"per_second", "per_domain_per_minute"}

// Load reads the campaign file at path and validates all of it, including
// that the files it names exist. It returns every problem at once as
// Problems sorted by line; problems with the file as a whole, such as a
// missing file, have line 0. now is the default start time.
func Load(path string, now time.Time) (*File, error) {
	l := &loader{file: path}
	f := l.load(path, now)
	if len(l.problems) > 0 {
		slices.SortStableFunc(l.problems, func(a, b Problem) int { return a.Line - b.Line })
		return nil, l.problems
	}
	f.Warnings = l.warnings
	return f, nil
}

// loader collects problems while it walks the YAML tree.
type loader struct {
	file     string
	dir      string // absolute directory of the file
	problems Problems
	warnings Problems
	texts    []namedText
	// wavesLine is where waves: is written (0: not written).
	wavesLine int
}

func (l *loader) warnf(line int, format string, args ...any) {
	l.warnings = append(l.warnings, Problem{File: l.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) addf(line int, format string, args ...any) {
	l.problems = append(l.problems, Problem{File: l.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// yamlLineRE matches the position in go-yaml's syntax errors.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (l *loader) addYAMLError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		l.addf(line, "YAML syntax: %s", m[2])
		return
	}
	l.addf(0, "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

func (l *loader) load(path string, now time.Time) *File {
	abs, err := filepath.Abs(path)
	if err != nil {
		l.addf(0, "%v", err)
		return nil
	}
	l.dir = filepath.Dir(abs)
	data, err := readLimited(path)
	if err != nil {
		l.addf(0, "%v", err)
		return nil
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			l.addf(0, "the file is empty; a campaign needs at least %s", strings.Join(required, ", "))
		} else {
			l.addYAMLError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.addf(extra.Line, "a second YAML document (after ---); a campaign file holds one")
	} else if err != io.EOF {
		l.addYAMLError(err)
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		if isNull(root) {
			l.addf(root.Line, "the file is empty; a campaign needs at least %s", strings.Join(required, ", "))
		} else {
			l.addf(root.Line, "a campaign file is a mapping of keys (id: …, from: …), not %s", kindName(root))
		}
		return nil
	}

	var (
		f        = &File{Path: path}
		c        = &f.Campaign
		startAt  = now
		startOK  = true
		deadline *yaml.Node
		reminder *yaml.Node
	)
	seen := l.mapping(root, "", keys)
	for _, k := range required {
		if _, ok := seen[k]; !ok {
			l.addf(root.Line, "missing required key %q", k)
		}
	}
	for _, k := range keys {
		n, ok := seen[k]
		if !ok {
			continue
		}
		switch k {
		case "id":
			if v, ok := l.str(k, n); ok {
				if !nameRE.MatchString(v) {
					l.addf(n.Line, "id: %q may only contain a-z, 0-9 and '-', 1 to 64 characters", v)
				}
				c.ID = v
			}
		case "from":
			if v, ok := l.str(k, n); ok {
				if _, err := mail.ParseAddress(v); err != nil {
					l.addf(n.Line, "from: %q is not an address like \"ACME News <news@acme.example>\": %s", v, strings.TrimPrefix(err.Error(), "mail: "))
				}
				c.From = strings.TrimSpace(v)
			}
		case "subject":
			c.Subjects = l.text(k, n, true, false)
		case "reminder_subject":
			c.ReminderSubjects = l.text(k, n, true, false)
		case "list_name":
			c.ListName = l.text(k, n, true, false)
		case "default_locale":
			if v, ok := l.str(k, n); ok {
				loc := locale.Normalize(v)
				if !locale.Default().Has(loc) {
					l.addf(n.Line, "default_locale: %q is not a language repermit has (%s)", v, strings.Join(locale.Default().Locales(), ", "))
				}
				c.DefaultLocale = loc
			}
		case "timezone":
			if v, ok := l.str(k, n); ok {
				if _, err := time.LoadLocation(strings.TrimSpace(v)); err != nil || strings.TrimSpace(v) == "Local" {
					l.addf(n.Line, "timezone: %q is not an IANA time zone like Europe/Copenhagen", v)
				}
				c.TimeZone = strings.TrimSpace(v)
			}
		case "controller":
			c.Controller = l.controller(n)
		case "webhooks":
			c.Webhooks = l.webhooks(n)
		case "recipients":
			f.RecipientsPath = l.path(k, n, false)
		case "suppression":
			f.SuppressionPath = l.path(k, n, false)
		case "templates":
			c.TemplatesDir = l.path(k, n, true)
		case "confirm_base_url":
			if v, ok := l.str(k, n); ok {
				c.ConfirmBaseURL = l.baseURL(n.Line, v)
			}
		case "start_at":
			startOK = false
			if v, ok := l.str(k, n); ok {
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					l.addf(n.Line, "start_at: %q is not an RFC 3339 timestamp (use e.g. 2026-12-01T09:00:00+01:00)", v)
				} else {
					startAt, startOK = t, true
				}
			}
		case "deadline":
			deadline = n
			f.deadlineLine = n.Line
		case "min_answer_window":
			if v, ok := l.str(k, n); ok {
				d, err := ParseDuration(v)
				switch {
				case err != nil:
					l.addf(n.Line, "min_answer_window: %s", repermit.ErrorMessage(err))
				case d <= 0:
					l.addf(n.Line, "min_answer_window: %q must be a positive duration", v)
				}
				c.MinAnswerWindow = d
			}
		case "reminders":
			reminder = n
		case "rate":
			c.Rate = l.rate(n)
			f.rateLine = n.Line
		case "topics":
			c.Topics, c.TopicText = l.topics(n)
		case "waves":
			if !isNull(n) {
				c.Waves = l.waves(n)
			}
		case "shards":
			// Redis Cluster: how many hash-slot shards the recipients are
			// spread over; left out, launch picks one from the list's size.
			if v, ok := l.count("shards", n); ok {
				if v < 1 || v > maxShards {
					l.addf(n.Line, "shards: must be 1 to %d", maxShards)
				}
				c.Shards = v
			}
		case "retention":
			if v, ok := l.str(k, n); ok {
				d, err := ParseDuration(v)
				switch {
				case err != nil:
					l.addf(n.Line, "retention: %s", repermit.ErrorMessage(err))
				case d < 0:
					l.addf(n.Line, "retention: %q is negative", v)
				}
				c.Retention = d
			}
		case "list_unsubscribe_mailto":
			if v, ok := l.str(k, n); ok {
				addr, err := recipients.Normalize(strings.TrimPrefix(strings.TrimSpace(v), "mailto:"))
				if err != nil {
					l.addf(n.Line, "list_unsubscribe_mailto: %s", repermit.ErrorMessage(err))
				}
				c.UnsubscribeMailto = addr
			}
		}
	}
	if c.DefaultLocale == "" {
		c.DefaultLocale = locale.Fallback
	}
	c.Subject = c.Subjects.In(locale.Prefixes(c.DefaultLocale)...)
	// Recipients whose locale has no language file get the default
	// locale, so every wording must have it.
	if locale.Default().Has(c.DefaultLocale) {
		for _, t := range l.texts {
			if !t.optional && !t.text.Covers(locale.Prefixes(c.DefaultLocale)...) {
				l.addf(t.line, "%s: no wording for the default locale %s (default_locale)", t.key, c.DefaultLocale)
			}
		}
	}
	f.texts = l.texts
	f.wavesLine = l.wavesLine
	c.StartAt = startAt
	// The deadline and the reminders are relative to the start; with a bad
	// start_at only their own syntax is checked, as comparing them with a
	// made-up start would report problems that are not there.
	if deadline != nil {
		c.Deadline = l.deadline(deadline, startAt, now, startOK)
	}
	if reminder != nil {
		c.Reminders = l.reminders(reminder, startAt, c.Deadline)
	}
	return f
}

func readLimited(path string) ([]byte, error) {
	fh, err := repermit.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read campaign file: %w", unwrapPathError(err))
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read campaign file: %w", unwrapPathError(err))
	}
	if len(data) > maxFileBytes {
		return nil, errors.New("the campaign file is larger than 1 MB; recipients belong in the CSV file")
	}
	return data, nil
}

// mapping checks the keys of a mapping node against known and returns the
// value node of each key found. prefix ("rate.") qualifies messages.
func (l *loader) mapping(n *yaml.Node, prefix string, known []string) map[string]*yaml.Node {
	seen := make(map[string]*yaml.Node)
	firstLine := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := deref(n.Content[i]), deref(n.Content[i+1])
		if kn.Kind != yaml.ScalarNode {
			l.addf(kn.Line, "%skeys must be plain names, not %s", prefix, kindName(kn))
			continue
		}
		k := kn.Value
		if first, dup := firstLine[k]; dup {
			l.addf(kn.Line, "duplicate key %q (first at line %d)", prefix+k, first)
			continue
		}
		firstLine[k] = kn.Line
		if !slices.Contains(known, k) {
			if s := suggest(k, known); s != "" {
				l.addf(kn.Line, "unknown key %q (did you mean %q?)", prefix+k, s)
			} else {
				l.addf(kn.Line, "unknown key %q (known keys: %s)", prefix+k, strings.Join(known, ", "))
			}
			continue
		}
		seen[k] = vn
	}
	return seen
}

// str returns the string value of a scalar, or reports why there is none.
func (l *loader) str(key string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		l.addf(n.Line, "%s: must be a single value, not %s", key, kindName(n))
		return "", false
	}
	if isNull(n) || strings.TrimSpace(n.Value) == "" {
		l.addf(n.Line, "%s: must not be empty", key)
		return "", false
	}
	return n.Value, true
}

// path resolves a file or directory named relative to the campaign file
// and checks that it can be read.
func (l *loader) path(key string, n *yaml.Node, dir bool) string {
	v, ok := l.str(key, n)
	if !ok {
		return ""
	}
	p := v
	if !filepath.IsAbs(p) {
		p = filepath.Join(l.dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		l.addf(n.Line, "%s: %q does not exist (looked in %s)", key, v, filepath.Dir(p))
		return p
	case err != nil:
		l.addf(n.Line, "%s: %v", key, unwrapPathError(err))
		return p
	case dir && !fi.IsDir():
		l.addf(n.Line, "%s: %q is not a directory", key, v)
		return p
	case !dir && fi.IsDir():
		l.addf(n.Line, "%s: %q is a directory, not a file", key, v)
		return p
	}
	if !dir {
		fh, err := repermit.OpenFile(p)
		if err != nil {
			l.addf(n.Line, "%s: cannot read %q: %v", key, v, unwrapPathError(err))
			return p
		}
		fh.Close()
	}
	return p
}

// baseURL checks confirm_base_url. Plain http is allowed only for the
// local machine: links with tokens must not travel in clear text, but
// tests and the demo run on 127.0.0.1.
func (l *loader) baseURL(line int, v string) string {
	u, err := url.Parse(strings.TrimSpace(v))
	if err != nil || u.Host == "" || !u.IsAbs() {
		l.addf(line, "confirm_base_url: %q is not an absolute URL like https://consent.acme.example", v)
		return ""
	}
	host := u.Hostname()
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			l.addf(line, "confirm_base_url: %q must use https (http is allowed only for localhost)", v)
		}
	default:
		l.addf(line, "confirm_base_url: %q must use https", v)
	}
	if u.User != nil {
		l.addf(line, "confirm_base_url: %q must not contain a user name or password", v)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(v, "#") {
		l.addf(line, "confirm_base_url: %q must not have a query (?…) or fragment (#…); links are built as BASE/c/TOKEN", v)
	}
	return strings.TrimRight(u.String(), "/")
}

// deadline returns the absolute deadline; it checks it against start only
// if startOK, and returns the zero time for a deadline it could not check.
func (l *loader) deadline(n *yaml.Node, start, now time.Time, startOK bool) time.Time {
	v, ok := l.str("deadline", n)
	if !ok {
		return time.Time{}
	}
	if looksLikeTimestamp(v) {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			l.addf(n.Line, "deadline: %q is not an RFC 3339 timestamp (use e.g. 2026-12-31T18:00:00+01:00) or a duration like 30d", v)
			return time.Time{}
		}
		if !startOK {
			return time.Time{}
		}
		if !t.After(start) {
			l.addf(n.Line, "deadline: %s is not after start_at (%s)", v, start.Format(time.RFC3339))
		}
		if !t.After(now) {
			l.addf(n.Line, "deadline: %s is in the past", v)
		}
		return t
	}
	d, err := ParseDuration(v)
	if err != nil {
		l.addf(n.Line, "deadline: %s", repermit.ErrorMessage(err))
		return time.Time{}
	}
	if d <= 0 {
		l.addf(n.Line, "deadline: %q must be a positive duration after start_at", v)
		return time.Time{}
	}
	if !startOK {
		return time.Time{}
	}
	t := start.Add(d)
	if !t.After(now) {
		l.addf(n.Line, "deadline: %s after start_at (%s) is in the past", v, start.Format(time.RFC3339))
	}
	return t
}

// looksLikeTimestamp tells a date ("2026-…") from a duration, so that a
// mistyped timestamp is reported as one.
func looksLikeTimestamp(v string) bool {
	return len(v) >= 5 && v[4] == '-' && isDigits(v[:4])
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func (l *loader) reminders(n *yaml.Node, start, deadline time.Time) []time.Duration {
	if n.Kind != yaml.SequenceNode {
		if isNull(n) {
			return nil
		}
		l.addf(n.Line, "reminders: must be a list of durations like [7d, 21d], not %s", kindName(n))
		return nil
	}
	var out []time.Duration
	var prev string
	for _, item := range n.Content {
		item = deref(item)
		v, ok := l.str("reminders", item)
		if !ok {
			continue
		}
		d, err := ParseDuration(v)
		switch {
		case err != nil:
			l.addf(item.Line, "reminders: %s", repermit.ErrorMessage(err))
			continue
		case d <= 0:
			l.addf(item.Line, "reminders: %q must be a positive duration after start_at", v)
			continue
		case len(out) > 0 && d <= out[len(out)-1]:
			l.addf(item.Line, "reminders: %s is not after the previous reminder (%s); list them in increasing order", v, prev)
			continue
		case !deadline.IsZero() && !start.Add(d).Before(deadline):
			l.addf(item.Line, "reminders: %s is not before the deadline", v)
			continue
		}
		out = append(out, d)
		prev = v
	}
	return out
}

func (l *loader) rate(n *yaml.Node) repermit.Rate {
	var r repermit.Rate
	if n.Kind != yaml.MappingNode {
		if !isNull(n) {
			l.addf(n.Line, "rate: must be a mapping (per_second: …, per_domain_per_minute: …), not %s", kindName(n))
		}
		return r
	}
	seen := l.mapping(n, "rate.", rateKeys)
	if v, ok := seen["per_second"]; ok {
		r.PerSecond, _ = l.count("rate.per_second", v)
	}
	v, ok := seen["per_domain_per_minute"]
	if !ok || isNull(v) {
		return r
	}
	if v.Kind != yaml.MappingNode {
		l.addf(v.Line, "rate.per_domain_per_minute: must be a mapping like {default: 600, gmail.com: 300}, not %s", kindName(v))
		return r
	}
	r.PerDomainPerMinute = make(map[string]int)
	firstLine := make(map[string]int)
	for i := 0; i+1 < len(v.Content); i += 2 {
		kn, vn := deref(v.Content[i]), deref(v.Content[i+1])
		if kn.Kind != yaml.ScalarNode {
			l.addf(kn.Line, "rate.per_domain_per_minute: keys must be domain names, not %s", kindName(kn))
			continue
		}
		domain := strings.ToLower(strings.TrimSpace(kn.Value))
		if domain != "default" {
			// Recipients' domains are normalized to punycode; the keys
			// must be too, or a limit for bücher.example would never apply.
			addr, err := recipients.Normalize("postmaster@" + domain)
			if err != nil {
				l.addf(kn.Line, "rate.per_domain_per_minute: %q is not a domain name", kn.Value)
				continue
			}
			domain = addr[len("postmaster@"):]
		}
		if first, dup := firstLine[domain]; dup {
			l.addf(kn.Line, "duplicate key %q in rate.per_domain_per_minute (first at line %d)", kn.Value, first)
			continue
		}
		firstLine[domain] = kn.Line
		if c, ok := l.count("rate.per_domain_per_minute."+kn.Value, vn); ok {
			r.PerDomainPerMinute[domain] = c
		}
	}
	return r
}

// count parses a non-negative whole number.
func (l *loader) count(key string, n *yaml.Node) (int, bool) {
	v, ok := l.str(key, n)
	if !ok {
		return 0, false
	}
	c, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	switch {
	case err != nil:
		l.addf(n.Line, "%s: %q is not a whole number", key, v)
		return 0, false
	case c < 0:
		l.addf(n.Line, "%s: %d is negative (0 means unlimited)", key, c)
		return 0, false
	}
	return c, true
}

// topics reads the topic list: plain ids ([yoga, events]) or mappings
// with an id, a label and a description per locale, in any mix.
func (l *loader) topics(n *yaml.Node) ([]string, map[string]repermit.TopicText) {
	if n.Kind != yaml.SequenceNode {
		if !isNull(n) {
			l.addf(n.Line, "topics: must be a list like [yoga, events], not %s", kindName(n))
		}
		return nil, nil
	}
	if len(n.Content) > maxTopics {
		l.addf(n.Line, "topics: %d topics, at most %d are allowed", len(n.Content), maxTopics)
	}
	var out []string
	var texts map[string]repermit.TopicText
	firstLine := make(map[string]int)
	for _, item := range n.Content {
		item = deref(item)
		idNode := item
		var tt repermit.TopicText
		if item.Kind == yaml.MappingNode {
			seen := l.mapping(item, "topics[].", topicKeys)
			var ok bool
			if idNode, ok = seen["id"]; !ok {
				l.addf(item.Line, "topics: a topic written as a mapping needs an id")
				continue
			}
			id := idNode.Value
			if v, ok := seen["label"]; ok {
				tt.Label = l.text("topics."+id+".label", v, true, false)
			}
			if v, ok := seen["description"]; ok {
				tt.Description = l.text("topics."+id+".description", v, false, true)
			}
		}
		v, ok := l.str("topics", idNode)
		if !ok {
			continue
		}
		if !nameRE.MatchString(v) {
			l.addf(idNode.Line, "topics: %q may only contain a-z, 0-9 and '-', 1 to 64 characters", v)
			continue
		}
		if first, dup := firstLine[v]; dup {
			l.addf(idNode.Line, "topics: %q is listed twice (first at line %d)", v, first)
			continue
		}
		firstLine[v] = idNode.Line
		out = append(out, v)
		if tt.Label != nil || tt.Description != nil {
			if texts == nil {
				texts = make(map[string]repermit.TopicText)
			}
			texts[v] = tt
		}
	}
	return out, texts
}

// text reads a wording given as one string or as a mapping of locale to
// string ({en: …, de: …}). A locale no language file exists for is a
// warning: its wording can never be shown. oneLine refuses line breaks
// (subjects, names); optional wordings may lack a used locale.
func (l *loader) text(key string, n *yaml.Node, oneLine, optional bool) repermit.Text {
	check := func(line int, k, v string) bool {
		if oneLine && strings.ContainsAny(strings.TrimSpace(v), "\r\n") {
			l.addf(line, "%s: must be one line", k)
			return false
		}
		return true
	}
	if n.Kind == yaml.ScalarNode {
		v, ok := l.str(key, n)
		if !ok || !check(n.Line, key, v) {
			return nil
		}
		t := repermit.Text{"": strings.TrimSpace(v)}
		l.texts = append(l.texts, namedText{key, n.Line, t, optional})
		return t
	}
	if n.Kind != yaml.MappingNode {
		l.addf(n.Line, "%s: must be a text or a mapping of locale to text like {en: …, de: …}, not %s", key, kindName(n))
		return nil
	}
	t := make(repermit.Text)
	firstLine := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := deref(n.Content[i]), deref(n.Content[i+1])
		loc := locale.Normalize(kn.Value)
		if kn.Kind != yaml.ScalarNode || loc == "" {
			l.addf(kn.Line, "%s: %q is not a locale like en, de or de-AT", key, kn.Value)
			continue
		}
		if first, dup := firstLine[loc]; dup {
			l.addf(kn.Line, "%s: locale %s is there twice (first at line %d)", key, kn.Value, first)
			continue
		}
		firstLine[loc] = kn.Line
		if !locale.Default().Known(loc) {
			l.warnf(kn.Line, "%s: no language file for locale %q (repermit speaks %s); this wording is never shown", key, kn.Value, strings.Join(locale.Default().Locales(), ", "))
		}
		v, ok := l.str(key+"."+kn.Value, vn)
		if !ok || !check(vn.Line, key+"."+kn.Value, v) {
			continue
		}
		t[loc] = strings.TrimSpace(v)
	}
	if len(t) == 0 {
		if len(n.Content) == 0 {
			l.addf(n.Line, "%s: must not be empty", key)
		}
		return nil
	}
	l.texts = append(l.texts, namedText{key, n.Line, t, optional})
	return t
}

// webhooks reads the list of CRM endpoints: each a url (http or https)
// and a Standard Webhooks secret "whsec_" + base64 of 24 to 64 bytes.
func (l *loader) webhooks(n *yaml.Node) []repermit.Webhook {
	if n.Kind != yaml.SequenceNode {
		l.addf(n.Line, "webhooks: must be a list of {url, secret}, not %s", kindName(n))
		return nil
	}
	var out []repermit.Webhook
	for i, item := range n.Content {
		item = deref(item)
		if item.Kind != yaml.MappingNode {
			l.addf(item.Line, "webhooks[%d]: must be a mapping {url, secret}, not %s", i, kindName(item))
			continue
		}
		seen := l.mapping(item, fmt.Sprintf("webhooks[%d].", i), webhookKeys)
		var w repermit.Webhook
		for _, k := range webhookKeys {
			vn, ok := seen[k]
			if !ok {
				l.addf(item.Line, "webhooks[%d]: missing %s", i, k)
				continue
			}
			v, ok := l.str("webhooks."+k, vn)
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "url":
				if u, err := url.Parse(v); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
					l.addf(vn.Line, "webhooks[%d].url: %q is not an absolute http(s) URL", i, v)
				}
				w.URL = v
			case "secret":
				key, ok := strings.CutPrefix(v, "whsec_")
				raw, err := base64.StdEncoding.DecodeString(key)
				if !ok || err != nil || len(raw) < 24 || len(raw) > 64 {
					l.addf(vn.Line, "webhooks[%d].secret: must be \"whsec_\" and the base64 of 24 to 64 random bytes (Standard Webhooks), e.g. whsec_$(openssl rand -base64 32)", i)
				}
				w.Secret = v
			}
		}
		out = append(out, w)
	}
	return out
}

// controller reads the controller block (GDPR Art. 13): who is asking,
// where to reach them and where their privacy policy is.
func (l *loader) controller(n *yaml.Node) repermit.Controller {
	var c repermit.Controller
	if n.Kind != yaml.MappingNode {
		l.addf(n.Line, "controller: must be a mapping (name, address, contact, privacy_url, optional dpo), not %s", kindName(n))
		return c
	}
	seen := l.mapping(n, "controller.", controllerKeys)
	for _, k := range []string{"name", "address", "contact", "privacy_url"} {
		if _, ok := seen[k]; !ok {
			l.addf(n.Line, "controller: missing %s (GDPR Art. 13: recipients must be told who asks, how to reach them and where the privacy policy is)", k)
		}
	}
	oneLine := func(k string) string {
		v, ok := l.str("controller."+k, seen[k])
		if !ok {
			return ""
		}
		v = strings.Join(strings.Fields(v), " ")
		return v
	}
	if _, ok := seen["name"]; ok {
		c.Name = oneLine("name")
	}
	if _, ok := seen["address"]; ok {
		c.Address = oneLine("address")
	}
	for _, k := range []string{"contact", "dpo"} {
		vn, ok := seen[k]
		if !ok {
			continue
		}
		v := oneLine(k)
		if v != "" && !isMailOrURL(v) {
			l.addf(vn.Line, "controller.%s: %q is neither an e-mail address nor an https URL", k, v)
		}
		if k == "contact" {
			c.Contact = v
		} else {
			c.DPO = v
		}
	}
	if vn, ok := seen["privacy_url"]; ok {
		v := oneLine("privacy_url")
		if u, err := url.Parse(v); v != "" && (err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http")) {
			l.addf(vn.Line, "controller.privacy_url: %q is not an absolute URL like https://acme.example/privacy", v)
		}
		c.PrivacyURL = v
	}
	return c
}

func isMailOrURL(v string) bool {
	if u, err := url.Parse(v); err == nil && u.Host != "" && (u.Scheme == "https" || u.Scheme == "http") {
		return true
	}
	_, err := mail.ParseAddress(v)
	return err == nil
}

// CheckLocales reports, for each locale recipients will read, every
// wording of the file that has none for it, at the wording's line:
// a campaign must not launch to Danish readers with a German subject.
// used maps each locale to its number of recipients. Missing optional
// wordings (topic descriptions) are returned as warnings.
func (f *File) CheckLocales(used map[string]int64) (errs, warns Problems) {
	locs := make([]string, 0, len(used))
	for l := range used {
		locs = append(locs, l)
	}
	slices.Sort(locs)
	for _, t := range f.texts {
		for _, loc := range locs {
			if t.text.Covers(locale.Prefixes(loc)...) {
				continue
			}
			p := Problem{File: f.Path, Line: t.line, Msg: fmt.Sprintf("%s: no wording for %s, which %d recipients read", t.key, loc, used[loc])}
			if t.optional {
				p.Msg += "; they see none"
				warns = append(warns, p)
			} else {
				errs = append(errs, p)
			}
		}
	}
	// A subject written as one string goes to every reader as it is: right
	// for one language, an English subject in German and Danish mailboxes
	// for several. Said at its line, not refused: it may be a name that
	// reads the same in each.
	if len(locs) > 1 {
		for _, t := range f.texts {
			if (t.key == "subject" || t.key == "reminder_subject") && len(t.text) == 1 && t.text[""] != "" {
				warns = append(warns, Problem{File: f.Path, Line: t.line, Msg: fmt.Sprintf(
					"%s: one wording for readers of %s; write it per locale like {%s: …, %s: …} unless it reads right in each",
					t.key, strings.Join(locs, ", "), locs[0], locs[1])})
			}
		}
	}
	byLine := func(a, b Problem) int { return a.Line - b.Line }
	slices.SortStableFunc(errs, byLine)
	slices.SortStableFunc(warns, byLine)
	return errs, warns
}

// deref follows YAML aliases (*anchor) to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "empty"
		}
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "an alias"
}

// suggest returns the known key closest to k if it is close enough to be a
// typo, or "".
func suggest(k string, known []string) string {
	best, bestDist := "", 0
	lk := strings.ToLower(k)
	for _, cand := range known {
		if len(lk) >= 4 && strings.HasPrefix(cand, lk) {
			return cand // a key cut short: "list_unsubscribe"
		}
		d := editDistance(lk, cand)
		if best == "" || d < bestDist {
			best, bestDist = cand, d
		}
	}
	limit := 2
	if len(best) >= 10 {
		limit = 3
	}
	if bestDist <= limit && bestDist < len(best) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unwrapPathError drops the path from an *os.PathError, which the message
// around it already names.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
