package mailer

import (
	"net/mail"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/repermit/repermit"
)

// The body of a mail is the same for every recipient of a campaign, locale
// and kind except for the recipient's name and the four links. Build
// renders each (campaign, locale, kind) once with placeholders in their
// place, keeps the result as segments, and per mail only splices the
// recipient's values in: escaped for HTML as html/template would, and, in
// the text part, re-wrapping only the lines that hold one. The output is
// byte for byte what render gives (TestPrerenderMatchesRender); whatever
// the fast path cannot reproduce exactly (custom templates, a link that
// html/template would rewrite) goes through render.

// slot is a recipient-dependent value.
type slot int

const (
	slotName slot = iota
	slotConfirm
	slotYes
	slotNo
	slotUnsubscribe
	numSlots
)

// placeholders stand for the slots while pre-rendering: letters and digits
// only, so that neither html/template nor the wrapping changes them.
var placeholders = [numSlots]string{
	"Zq7xRPNAMEk3Wv", "Zq7xRPCONFk3Wv", "Zq7xRPYESk3Wv", "Zq7xRPNOk3Wv", "Zq7xRPUNSUBk3Wv",
}

// piece is literal text (slot < 0) or a slot.
type piece struct {
	lit  string
	slot slot
}

// segment is a run of text lines already wrapped (dyn nil), or one line
// holding slots, to be wrapped once they are filled.
type segment struct {
	static string
	dyn    []piece
}

type prerendered struct {
	ok      bool // false: render this key the slow way
	sender  string
	from    *mail.Address // the campaign's From, nil if it does not parse
	subject string
	// subjectField is the Subject header's value (BuildWire).
	subjectField string
	locale       string
	text         []segment
	html         []piece // nil when no HTML part
	// textQP and htmlQP are the parts as BuildWire writes them: lines
	// without slots already quoted-printable encoded (wire.go).
	textQP, htmlQP []qpSegment
	textSize       int
	htmlSize       int
}

type prerenderKey struct {
	c     *repermit.Campaign
	kind  Kind
	key   string
	loc   string
	named bool
}

// prerenderCache is per Templates; a campaign is assumed not to change
// after its first Build (the worker keeps one per launched campaign).
type prerenderCache struct {
	mu sync.RWMutex
	m  map[prerenderKey]*prerendered
}

// maxPrerendered bounds the cache: a few kinds times the locales of one
// or two campaigns.
const maxPrerendered = 512

func (t *Templates) prerendered(d Data, kind Kind) *prerendered {
	key, loc := t.pick(d, kind)
	k := prerenderKey{c: d.Campaign, kind: kind, key: key, loc: loc, named: d.Recipient.Name != ""}
	t.pre.mu.RLock()
	p := t.pre.m[k]
	t.pre.mu.RUnlock()
	if p != nil {
		return p
	}
	p = t.prerender(d.Campaign, kind, k.named, d.Recipient.Locale)
	t.pre.mu.Lock()
	if t.pre.m == nil || len(t.pre.m) >= maxPrerendered {
		t.pre.m = make(map[prerenderKey]*prerendered)
	}
	t.pre.m[k] = p
	t.pre.mu.Unlock()
	return p
}

// prerender renders with placeholders, then checks the splice against a
// real render of awkward values; any difference disables the fast path
// for this key.
func (t *Templates) prerender(c *repermit.Campaign, kind Kind, named bool, loc string) *prerendered {
	p := &prerendered{}
	if t.custom {
		return p
	}
	probe := func(vals [numSlots]string) Data {
		r := &repermit.Recipient{Campaign: c.ID, Locale: loc}
		if named {
			r.Name = vals[slotName]
		}
		d := NewData(c, r, vals[slotConfirm], vals[slotUnsubscribe])
		d.ConfirmYesURL, d.ConfirmNoURL = vals[slotYes], vals[slotNo]
		return d
	}
	out, err := t.render(probe(placeholders), kind)
	if err != nil || containsSlot(out.subject) {
		return p
	}
	p.subject, p.locale = out.subject, out.locale
	p.subjectField = subjectField(out.subject)
	p.sender = senderName(c.From)
	p.from, _ = mail.ParseAddress(c.From)
	p.text = splitText(out.text)
	if out.html != "" {
		p.html = split(out.html)
	}
	for _, s := range p.text {
		p.textSize += len(s.static)
		for _, pc := range s.dyn {
			p.textSize += len(pc.lit) + 1
		}
	}
	for _, pc := range p.html {
		p.htmlSize += len(pc.lit)
	}
	p.textQP = encodeSegments(p.text)
	if out.html != "" {
		// The HTML part's lines, cut as the text's (never wrapped).
		p.htmlQP = encodeSegments(splitText(out.html))
	}
	p.ok = true
	// Awkward but valid values: markup, quotes, non-ASCII, a name long
	// enough to move line breaks, links with characters HTML escapes.
	awkward := [numSlots]string{
		`Zoë "Z" O'Brien <z&o> + Ämilie-Søren Ñúñez de la Cruz y Łukasiewicz-Þorsteinsdóttir ﷐`,
		"https://x.invalid/c/A-b_c~1?p=1&q=2+3", "https://x.invalid/c/A?answer=yes&x=+",
		"https://x.invalid/c/A?answer=no&x=1", "http://x.invalid/u/Ab-_",
	}
	want, err := t.render(probe(awkward), kind)
	if err != nil {
		p.ok = false
		return p
	}
	text, html, ok := p.fill(awkward)
	if !ok || text != want.text || html != want.html || want.subject != p.subject || want.locale != p.locale {
		p.ok = false
	}
	return p
}

func containsSlot(s string) bool {
	for _, ph := range placeholders {
		if strings.Contains(s, ph) {
			return true
		}
	}
	return false
}

// split cuts s at the placeholders.
func split(s string) []piece {
	var out []piece
	for {
		at, which := -1, slot(-1)
		for i, ph := range placeholders {
			if j := strings.Index(s, ph); j >= 0 && (at < 0 || j < at) {
				at, which = j, slot(i)
			}
		}
		if at < 0 {
			if s != "" {
				out = append(out, piece{lit: s, slot: -1})
			}
			return out
		}
		if at > 0 {
			out = append(out, piece{lit: s[:at], slot: -1})
		}
		out = append(out, piece{slot: which})
		s = s[at+len(placeholders[which]):]
	}
}

// splitText keeps the text part's lines without slots as they are (they
// were wrapped by render) and the lines with slots for wrapping per mail.
// Wrap treats every line on its own, so wrapping the filled line gives
// what wrapping the whole text would.
func splitText(wrapped string) []segment {
	var out []segment
	var static strings.Builder
	lines := strings.Split(wrapped, "\n")
	for i, line := range lines {
		last := i == len(lines)-1
		if !containsSlot(line) {
			static.WriteString(line)
			if !last {
				static.WriteByte('\n')
			}
			continue
		}
		if static.Len() > 0 {
			out = append(out, segment{static: static.String()})
			static.Reset()
		}
		out = append(out, segment{dyn: split(line)})
		if !last {
			static.WriteByte('\n')
		}
	}
	if static.Len() > 0 {
		out = append(out, segment{static: static.String()})
	}
	return out
}

// fill splices the values in; ok is false when a link would not come out
// of html/template as it is, so that the caller renders the slow way.
func (p *prerendered) fill(vals [numSlots]string) (text, html string, ok bool) {
	var b strings.Builder
	n := p.textSize
	for _, v := range vals {
		n += 2 * len(v)
	}
	b.Grow(n)
	var line strings.Builder
	for _, s := range p.text {
		if s.dyn == nil {
			b.WriteString(s.static)
			continue
		}
		line.Reset()
		for _, pc := range s.dyn {
			if pc.slot < 0 {
				line.WriteString(pc.lit)
			} else {
				line.WriteString(vals[pc.slot])
			}
		}
		b.WriteString(Wrap(line.String(), wrapWidth))
	}
	text = b.String()
	if p.html == nil {
		return text, "", true
	}
	for i := slotConfirm; i < numSlots; i++ {
		if !plainURL(vals[i]) {
			return "", "", false
		}
	}
	var h strings.Builder
	n = p.htmlSize
	for _, v := range vals {
		n += 4 * len(v)
	}
	h.Grow(n)
	for _, pc := range p.html {
		if pc.slot < 0 {
			h.WriteString(pc.lit)
		} else {
			escapeHTML(&h, vals[pc.slot])
		}
	}
	return text, h.String(), true
}

// plainURL reports whether html/template's URL filter and normalizer
// leave u as it is: an http(s) link of characters that need no
// percent-encoding.
func plainURL(u string) bool {
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$&*+,/:;=?@[]-._~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// escapeHTML writes s escaped as html/template escapes text and quoted
// attribute values (its htmlReplacementTable; noncharacters stay, as
// they do there outside unquoted attributes).
func escapeHTML(b *strings.Builder, s string) {
	written := 0
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		var repl string
		switch {
		case r == 0:
			repl = "\uFFFD"
		case r == '"':
			repl = "&#34;"
		case r == '&':
			repl = "&amp;"
		case r == '\'':
			repl = "&#39;"
		case r == '+':
			repl = "&#43;"
		case r == '<':
			repl = "&lt;"
		case r == '>':
			repl = "&gt;"
		}
		if repl != "" {
			b.WriteString(s[written:i])
			b.WriteString(repl)
			written = i + w
		}
		i += w
	}
	b.WriteString(s[written:])
}
