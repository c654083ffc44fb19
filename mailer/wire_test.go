package mailer

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBuildWireGivesWhatBuildGives: BuildWire writes the mail itself
// instead of through go-mail. Both are read back with net/mail and
// mime/multipart and compared field by field (decoded) and part by part
// (the encoded bytes), for names, locales and kinds that exercise the
// encodings, with and without a return path, and with a campaign's own
// templates, which take the fallback through Build.
func TestBuildWireGivesWhatBuildGives(t *testing.T) {
	std := loadTemplates(t, "")
	own := loadTemplates(t, "testdata/override")
	names := []string{
		"Ada Lovelace",
		"",
		`Jørgen "Ærø" Hansen, Jr.`,
		"Zoë O'Brien <z&o> " + strings.Repeat("Łukasiewicz-Þorsteinsdóttir ", 4),
		"Eve\r\nBcc: victim@example.net",
		"=?utf-8?q?encoded?=",
		strings.Repeat("Ø", 300), // 40-odd encoded-words, folded
	}
	noMailto := testCampaign()
	noMailto.UnsubscribeMailto = ""
	type tc struct {
		name       string
		tpl        *Templates
		camp       bool // the campaign without a mailto
		locale     string
		kind       Kind
		person     string
		returnPath string
	}
	var tests []tc
	for _, loc := range []string{"en", "de", "da", "fr", "xx"} {
		for _, k := range []Kind{Initial, Reminder(1)} {
			for i, n := range names {
				tests = append(tests, tc{name: loc + "/" + k.String() + "/" + string(rune('a'+i)), tpl: std, locale: loc, kind: k, person: n})
			}
		}
	}
	tests = append(tests,
		tc{name: "own templates", tpl: own, locale: "en", kind: Initial, person: "Ada Lovelace"},
		tc{name: "own templates, return path", tpl: own, locale: "de", kind: Initial, person: "Jørgen", returnPath: "b+x@bounce.acme.example"},
		tc{name: "return path", tpl: std, locale: "en", kind: Initial, person: "Ada", returnPath: "b+tok@bounce.acme.example"},
		tc{name: "no mailto", tpl: std, camp: true, locale: "da", kind: Reminder(1), person: "Søren"},
	)
	var buf bytes.Buffer // reused, as the worker does
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testCampaign()
			if tt.camp {
				c = noMailto
			}
			r := testRecipient(42, tt.locale)
			r.Name = tt.person
			d := testData(c, r)
			m, err := tt.tpl.Build(d, tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			if tt.returnPath != "" {
				if err := m.EnvelopeFrom(tt.returnPath); err != nil {
					t.Fatal(err)
				}
			}
			want, err := WireOf(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tt.tpl.BuildWire(d, tt.kind, tt.returnPath, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if got.From != want.From || !slices.Equal(got.To, want.To) {
				t.Errorf("envelope %s -> %v, want %s -> %v", got.From, got.To, want.From, want.To)
			}
			compareMessages(t, got.Data, want.Data)
			if tt.tpl == std {
				// The fallback is go-mail's, which leaves some lines long.
				checkFolded(t, got.Data)
			}
		})
	}
}

func compareMessages(t *testing.T, got, want []byte) {
	t.Helper()
	gm, err := mail.ReadMessage(bytes.NewReader(got))
	if err != nil {
		t.Fatalf("BuildWire's message does not parse: %v\n%s", err, got)
	}
	wm, err := mail.ReadMessage(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	keys := func(h mail.Header) []string {
		var ks []string
		for k := range h {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	if g, w := keys(gm.Header), keys(wm.Header); !slices.Equal(g, w) {
		t.Fatalf("header fields %v, want %v", g, w)
	}
	var dec mime.WordDecoder
	for _, k := range keys(wm.Header) {
		if len(gm.Header[k]) != 1 || len(wm.Header[k]) != 1 {
			t.Errorf("%s appears %d times, want once", k, len(gm.Header[k]))
			continue
		}
		g, w := gm.Header.Get(k), wm.Header.Get(k)
		switch k {
		case "Date":
			gd, err1 := gm.Header.Date()
			wd, err2 := wm.Header.Date()
			if err1 != nil || err2 != nil || gd.Sub(wd).Abs() > time.Minute {
				t.Errorf("Date %q, want about %q", g, w)
			}
			continue
		case "From", "To":
			ga, err1 := mail.ParseAddress(g)
			wa, err2 := mail.ParseAddress(w)
			if err1 != nil || err2 != nil || *ga != *wa {
				t.Errorf("%s %q (%v), want %q (%v)", k, g, ga, w, wa)
			}
			continue
		case "Content-Type":
			gt, gp, err1 := mime.ParseMediaType(g)
			wt, wp, err2 := mime.ParseMediaType(w)
			delete(gp, "boundary")
			delete(wp, "boundary")
			if err1 != nil || err2 != nil || gt != wt || len(gp) != len(wp) {
				t.Errorf("Content-Type %q, want %q", g, w)
			}
			continue
		}
		gv, err1 := dec.DecodeHeader(g)
		wv, err2 := dec.DecodeHeader(w)
		if err1 != nil || err2 != nil || gv != wv {
			t.Errorf("%s %q, want %q", k, g, w)
		}
	}
	gt, gp, _ := mime.ParseMediaType(gm.Header.Get("Content-Type"))
	_, wp, _ := mime.ParseMediaType(wm.Header.Get("Content-Type"))
	if !strings.HasPrefix(gt, "multipart/") {
		g, _ := io.ReadAll(gm.Body)
		w, _ := io.ReadAll(wm.Body)
		if !bytes.Equal(g, w) {
			t.Errorf("body\n%q\nwant\n%q", g, w)
		}
		return
	}
	gr := multipart.NewReader(gm.Body, gp["boundary"])
	wr := multipart.NewReader(wm.Body, wp["boundary"])
	for i := 0; ; i++ {
		g, gerr := gr.NextRawPart()
		w, werr := wr.NextRawPart()
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("part %d: %v, want %v", i, gerr, werr)
		}
		if werr != nil {
			break
		}
		for k := range w.Header {
			if g.Header.Get(k) != w.Header.Get(k) {
				t.Errorf("part %d %s %q, want %q", i, k, g.Header.Get(k), w.Header.Get(k))
			}
		}
		if len(g.Header) != len(w.Header) {
			t.Errorf("part %d header %v, want %v", i, g.Header, w.Header)
		}
		gb, _ := io.ReadAll(g)
		wb, _ := io.ReadAll(w)
		if !bytes.Equal(gb, wb) {
			t.Errorf("part %d:\n%s\nwant\n%s", i, gb, wb)
		}
	}
}

// checkFolded: every header line of msg stays within 78 characters
// unless it has no space to fold at (RFC 5322 section 2.1.1).
func checkFolded(t *testing.T, msg []byte) {
	t.Helper()
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(head), "\r\n") {
		if len(line) > maxLine && strings.Contains(strings.TrimLeft(line, " "), " ") {
			t.Errorf("header line of %d characters: %.60q…", len(line), line)
		}
	}
}
