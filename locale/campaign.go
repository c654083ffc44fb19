package locale

import (
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/repermit/repermit"
)

// Words is a campaign's wording in one locale: the catalog's messages with
// the campaign's names filled in, its topics' labels and its dates, all in
// one language. Mails and pages use the same Words, so that they say the
// same thing the same way.
type Words struct {
	Locale string // the catalog locale the words are in
	p      *Printer
	tz     *time.Location
	texts  []string // locales to look campaign wordings up in, in order
	vars   map[string]string
	c      *repermit.Campaign
}

// Words returns the wording of campaign c for a reader of locale loc:
// catalog messages in loc (falling back as Resolve does, with the
// campaign's default locale) and the campaign's own wordings (list name,
// subject, topic labels) in the first of loc, its prefixes, the catalog
// locale and the default locale that has one.
func (cat *Catalog) Words(c *repermit.Campaign, loc string) *Words {
	def := c.DefaultLocale
	if def == "" {
		def = Fallback
	}
	resolved := cat.Resolve(loc, def)
	w := &Words{Locale: resolved, p: &Printer{Locale: resolved, msgs: cat.msgs[resolved]}, tz: c.Location(), c: c}
	for _, l := range slices.Concat(Prefixes(loc), Prefixes(resolved), Prefixes(def)) {
		if !slices.Contains(w.texts, l) {
			w.texts = append(w.texts, l)
		}
	}
	sender, senderAddr := c.From, c.From
	if a, err := mail.ParseAddress(c.From); err == nil {
		sender, senderAddr = a.Address, a.Address
		if a.Name != "" {
			sender = a.Name
		}
	}
	list := c.ListName.In(w.texts...)
	if list == "" {
		list = sender
	}
	w.vars = map[string]string{
		"list":           list,
		"sender":         sender,
		"sender_address": senderAddr,
		"subject":        c.Subjects.In(w.texts...),
		"controller":     c.Controller.Name,
		"address":        c.Controller.Address,
		"contact":        c.Controller.Contact,
		"dpo":            c.Controller.DPO,
		"deadline":       w.Time(c.Deadline),
	}
	if w.vars["subject"] == "" {
		w.vars["subject"] = c.Subject
	}
	return w
}

// Var returns a named value of the campaign in this locale: list, sender,
// sender_address, subject, controller, address, contact, dpo, deadline.
func (w *Words) Var(name string) string { return w.vars[name] }

// T returns message key with its placeholders filled: first from args,
// pairs of name and value ("time", "31 December…"), then from the
// campaign's values (Var). An unknown key is an error, so that a template
// asking for a message no language has fails validation.
func (w *Words) T(key string, args ...any) (string, error) {
	if len(args)%2 != 0 {
		return "", fmt.Errorf("message %q: arguments must be name/value pairs, got %d values", key, len(args))
	}
	return w.p.Text(key, func(name string) (string, bool) {
		for i := 0; i+1 < len(args); i += 2 {
			if n, _ := args[i].(string); n == name {
				return fmt.Sprint(args[i+1]), true
			}
		}
		v, ok := w.vars[name]
		return v, ok
	})
}

// Time writes t in the campaign's time zone the way the locale writes a
// date and time, with the UTC offset.
func (w *Words) Time(t time.Time) string { return w.p.DateTime(t, w.tz) }

// Subject returns the subject of the initial mail (reminder false) or of a
// reminder in this locale.
func (w *Words) Subject(reminder bool) string {
	if !reminder {
		return w.vars["subject"]
	}
	if s := w.c.ReminderSubjects.In(w.texts...); s != "" {
		return s
	}
	s, _ := w.T("mail.reminder_subject")
	return s
}

// Topic is a campaign topic as a reader sees it.
type Topic struct {
	ID          string
	Label       string // the id when the campaign gives no label
	Description string // may be empty
}

// Topics returns the campaign's topics in this locale, in the campaign's
// order.
func (w *Words) Topics() []Topic {
	out := make([]Topic, len(w.c.Topics))
	for i, id := range w.c.Topics {
		tt := w.c.TopicText[id]
		out[i] = Topic{ID: id, Label: tt.Label.In(w.texts...), Description: tt.Description.In(w.texts...)}
		if out[i].Label == "" {
			out[i].Label = id
		}
	}
	return out
}

// Labels returns the labels of the topic ids given, joined by ", ".
func (w *Words) Labels(ids []string) string {
	labels := make([]string, 0, len(ids))
	for _, id := range ids {
		l := w.c.TopicText[id].Label.In(w.texts...)
		if l == "" {
			l = id
		}
		labels = append(labels, l)
	}
	return strings.Join(labels, ", ")
}

// Covered returns the catalog locales in which every wording of campaign c
// exists: the languages its pages can be shown in to a reader whose
// locale only the browser tells. The default locale is always among them.
func (cat *Catalog) Covered(c *repermit.Campaign) []string {
	def := Normalize(c.DefaultLocale)
	if def == "" {
		def = Fallback
	}
	out := []string{def}
	texts := []repermit.Text{c.ListName, c.Subjects, c.ReminderSubjects}
	for _, tt := range c.TopicText {
		texts = append(texts, tt.Label)
	}
	for _, l := range cat.names {
		if l == def {
			continue
		}
		ok := true
		for _, t := range texts {
			if !t.Covers(Prefixes(l)...) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}
