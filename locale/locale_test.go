package locale

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/repermit/repermit/templates"
)

// TestEveryLanguageHasEveryMessage loads the embedded strings: Load
// refuses a language that lacks a key another has or uses other
// placeholders than English, so adding a language is adding one complete
// file.
func TestEveryLanguageHasEveryMessage(t *testing.T) {
	c, err := Load(templates.Locales())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"da", "de", "en"} {
		if !c.Has(want) {
			t.Errorf("no %s among %v", want, c.Locales())
		}
	}
	// Translations that are word for word the English are forgotten ones.
	for _, l := range c.Locales() {
		if l == Fallback {
			continue
		}
		for _, k := range c.Keys() {
			v, _ := c.Message(l, k)
			en, _ := c.Message(Fallback, k)
			if v == en && len(en) > 20 {

				t.Errorf("%s.yaml: %s is the English text", l, k)
			}
		}
	}
}

func TestLoadRefusesAnIncompleteLanguage(t *testing.T) {
	en, err := fs.ReadFile(templates.Locales(), "en.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, content, want string
	}{
		{"missing key", "xx.yaml", strings.Replace(string(en), "answer.no: No, thanks\n", "", 1), `xx.yaml: no message "answer.no"`},
		{"other placeholder", "xx.yaml", strings.Replace(string(en), "Hello {name},", "Hello {nom},", 1), "xx.yaml:"},
		{"not a text", "xx.yaml", string(en) + "extra: [a, b]\n", "extra must be a non-empty text"},
		{"bad name", "Xx_YY.yaml", string(en), "file name must be a lower-case locale"},
		{"eleven months", "xx.yaml", strings.Replace(string(en), "November, December", "December", 1), "lists 11 months"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"en.yaml": {Data: en},
				tt.file:   {Data: []byte(tt.content)},
			}
			_, err := Load(fsys)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load: %v, want an error with %q", err, tt.want)
			}
		})
	}
	// A key only the new language has is missing in English.
	fsys := fstest.MapFS{"en.yaml": {Data: en}, "xx.yaml": {Data: append([]byte(string(en)), "only.here: text\n"...)}}
	if _, err := Load(fsys); err == nil || !strings.Contains(err.Error(), `en.yaml: no message "only.here"`) {
		t.Errorf("Load with an extra key: %v", err)
	}
}

func TestChain(t *testing.T) {
	tests := []struct{ in, def, want string }{
		{"de-AT", "", "de-at de en"},
		{"de_AT", "da", "de-at de da en"},
		{"EN", "", "en"},
		{"", "", "en"},
		{"", "da", "da en"},
		{" zh-Hant-TW ", "", "zh-hant-tw zh-hant zh en"},
		{"../../etc/passwd", "", "en"},
		{"fr-CA", "de", "fr-ca fr de en"},
	}
	for _, tt := range tests {
		if got := strings.Join(Chain(tt.in, tt.def), " "); got != tt.want {
			t.Errorf("Chain(%q, %q) = %q, want %q", tt.in, tt.def, got, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	c := Default()
	tests := []struct{ in, def, want string }{
		{"de-AT", "en", "de"},
		{"da", "de", "da"},
		{"pt-BR", "da", "da"},
		{"", "de", "de"},
		{"xx", "", "en"},
	}
	for _, tt := range tests {
		if got := c.Resolve(tt.in, tt.def); got != tt.want {
			t.Errorf("Resolve(%q, %q) = %q, want %q", tt.in, tt.def, got, tt.want)
		}
	}
}

func TestMatchHonoursQValues(t *testing.T) {
	c := Default()
	all := []string{"en", "da", "de"}
	tests := []struct {
		header     string
		candidates []string
		want       string
		ok         bool
	}{
		{"da;q=0.9, en;q=0.8", all, "da", true},
		{"en;q=0.8, da;q=0.9", all, "da", true},                  // order is not preference
		{"de-CH, en;q=0.5", all, "de", true},                     // a regional variant finds its language
		{"fr, da;q=0.1", all, "da", true},                        // the best offered, however low
		{"da;q=0.9, en;q=0.8", []string{"en", "de"}, "en", true}, // a campaign without Danish wordings
		{"ja", all, "", false},
		{"", all, "", false},
		{"en;q=0, da;q=0.5", all, "da", true}, // q=0 means "not this one"
		{";;;,,,", all, "", false},
	}
	for _, tt := range tests {
		got, ok := c.Match(tt.header, tt.candidates)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Match(%q, %v) = %q, %v; want %q, %v", tt.header, tt.candidates, got, ok, tt.want, tt.ok)
		}
	}
}

func TestDateTimeInTheCampaignsZone(t *testing.T) {
	c := Default()
	cph, err := time.LoadLocation("Europe/Copenhagen")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Date(2026, 12, 31, 22, 59, 0, 0, time.UTC)
	tests := []struct {
		loc  string
		tz   *time.Location
		want string
	}{
		{"en", cph, "31 December 2026 at 23:59 (UTC+01:00)"},
		{"de", cph, "31. Dezember 2026, 23:59 Uhr (UTC+01:00)"},
		{"da", cph, "31. december 2026 kl. 23.59 (UTC+01:00)"},
		{"en", time.UTC, "31 December 2026 at 22:59 (UTC)"},
		{"da", time.FixedZone("", -5*3600), "31. december 2026 kl. 17.59 (UTC-05:00)"},
	}
	for _, tt := range tests {
		if got := c.Printer(tt.loc).DateTime(deadline, tt.tz); got != tt.want {
			t.Errorf("%s in %v: %q, want %q", tt.loc, tt.tz, got, tt.want)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := func(n string) (string, bool) {
		v, ok := map[string]string{"list": "ACME", "x": "{list}"}[n]
		return v, ok
	}
	for in, want := range map[string]string{
		"Stay on {list}?":   "Stay on ACME?",
		"{unknown} {list}":  "{unknown} ACME",
		"{x}":               "{list}", // values are not expanded again
		"brace { alone":     "brace { alone",
		"{List} is no name": "{List} is no name",
	} {
		if got := Expand(in, vars); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}
