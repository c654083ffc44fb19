package mailer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestPrerenderMatchesRender builds mails for many recipients, in every
// locale and kind, through Build (pre-rendered parts) and through a full
// render, and wants the same bytes.
func TestPrerenderMatchesRender(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	names := []string{
		"", "Ada Lovelace", "Zoë Ñúñez-Łukasiewicz", "O'Brien & <Sons> \"Ltd\" + Co",
		"李小龙", "Ἀριστοτέλης", strings.Repeat("Bartholomew ", 9) + "the Longest-Named",
		strings.Repeat("x", 90), "tab\tand  two spaces ", "a\x00b", "line\nbreak", "\ufdd0\ufffe",
		"<script>alert(1)</script>",
	}
	locales := append(tpl.cat.Locales(), "de-AT", "pt-BR", "")
	kinds := []Kind{Initial, Reminder(1), Reminder(2)}
	seen := map[string]bool{}
	for _, loc := range locales {
		for _, kind := range kinds {
			for i, name := range names {
				r := testRecipient(int64(i), loc)
				r.Name = name
				d := testData(c, r)
				if i%3 == 1 {
					// Links of another signer: longer, and with a query.
					d = NewData(c, r, c.ConfirmBaseURL+"/c/"+strings.Repeat("Tk-_", 30)+"?s=1", c.ConfirmBaseURL+"/u/x+y")
				}
				want, err := tpl.render(d, kind)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tpl.renderFor(d, kind)
				if err != nil {
					t.Fatal(err)
				}
				want.textName, want.htmlName = "", ""
				got.textName, got.htmlName = "", ""
				if got != want {
					t.Fatalf("locale %q kind %v name %q: pre-rendered differs\ngot  %+v\nwant %+v", loc, kind, name, got, want)
				}
				if p := tpl.prerendered(d, kind); !p.ok {
					t.Errorf("locale %q kind %v: fast path not taken", loc, kind)
				}
				seen[want.locale] = true
			}
		}
	}
	if len(seen) < len(tpl.cat.Locales()) {
		t.Errorf("rendered locales %v, want all of %v", seen, tpl.cat.Locales())
	}
}

// TestBuildSameBytes compares whole messages, apart from the Date header,
// built with and without the pre-rendered parts.
func TestBuildSameBytes(t *testing.T) {
	fast := loadTemplates(t, "")
	slow := loadTemplates(t, "")
	slow.custom = true // as if overridden: every mail rendered in full
	c := testCampaign()
	date := regexp.MustCompile(`(?m)^Date: .*\r\n`)
	for _, loc := range fast.cat.Locales() {
		for _, name := range []string{"", "Ada", "Ünïcødé <&> " + strings.Repeat("long ", 20)} {
			r := testRecipient(7, loc)
			r.Name = name
			var out [2]bytes.Buffer
			for i, tpl := range []*Templates{fast, slow} {
				m, err := tpl.Build(testData(c, r), Reminder(1))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := m.WriteTo(&out[i]); err != nil {
					t.Fatal(err)
				}
			}
			a, b := date.ReplaceAll(out[0].Bytes(), nil), date.ReplaceAll(out[1].Bytes(), nil)
			// go-mail's MIME boundaries are random.
			a, b = canonical(a), canonical(b)
			if !bytes.Equal(a, b) {
				al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
				for i := range min(len(al), len(bl)) {
					if !bytes.Equal(al[i], bl[i]) {
						t.Errorf("locale %s name %q: messages differ at line %d:\n%q\n%q", loc, name, i+1, al[i], bl[i])
						break
					}
				}
				if len(al) != len(bl) {
					t.Errorf("locale %s name %q: %d lines, want %d", loc, name, len(al), len(bl))
				}
			}
		}
	}
}

// canonical sorts the header fields (go-mail writes them in map order)
// and names the random MIME boundaries by their order of appearance.
func canonical(msg []byte) []byte {
	head, body, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	var fields []string
	for _, line := range strings.Split(string(head), "\r\n") {
		if len(fields) > 0 && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
			fields[len(fields)-1] += "\r\n" + line
			continue
		}
		fields = append(fields, line)
	}
	slices.Sort(fields)
	return boundaries([]byte(strings.Join(fields, "\r\n") + "\r\n\r\n" + string(body)))
}

func boundaries(b []byte) []byte {
	re := regexp.MustCompile(`[0-9a-f]{60,}`)
	n := 0
	seen := map[string]string{}
	return re.ReplaceAllFunc(b, func(m []byte) []byte {
		if s, ok := seen[string(m)]; ok {
			return []byte(s)
		}
		n++
		seen[string(m)] = fmt.Sprintf("BOUNDARY%d", n)
		return []byte(seen[string(m)])
	})
}

// TestPrerenderCustomTemplates: a campaign's own templates may use any
// recipient field, so they are rendered in full.
func TestPrerenderCustomTemplates(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "initial.txt"), []byte("Hi {{.Recipient.Extra.company}} {{.ConfirmURL}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tpl := loadTemplates(t, dir)
	c := testCampaign()
	for _, company := range []string{"Analytical Engines", "Difference Ltd"} {
		r := testRecipient(1, "en")
		r.Extra = map[string]string{"company": company}
		got, err := tpl.renderFor(testData(c, r), Initial)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got.text, company) {
			t.Errorf("text %q lacks %q", got.text, company)
		}
	}
}

// TestPrerenderConcurrent builds from many goroutines at once, each
// checking its own recipient's name and links; run with -race.
func TestPrerenderConcurrent(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	locales := tpl.cat.Locales()
	errs := make(chan error, 64)
	for g := range 64 {
		go func() {
			r := testRecipient(int64(g), locales[g%len(locales)])
			r.Name = fmt.Sprintf("Name%02d", g)
			d := testData(c, r)
			got, err := tpl.renderFor(d, Kind(g%3))
			if err == nil && (!strings.Contains(got.text, r.Name) || !strings.Contains(got.html, d.ConfirmYesURL)) {
				err = fmt.Errorf("goroutine %d: name or link missing", g)
			}
			errs <- err
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
