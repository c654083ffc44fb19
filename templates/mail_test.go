package templates

import (
	"io/fs"
	"strings"
	"testing"
)

func TestEveryDefaultMailHasATextPart(t *testing.T) {
	names, err := fs.Glob(Mail(), "*")
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[string]bool)
	for _, n := range names {
		have[n] = true
	}
	for _, want := range []string{"initial.txt", "initial.html", "reminder.txt", "reminder.html"} {
		if !have[want] {
			t.Errorf("default %s missing; have %v", want, names)
		}
	}
	for _, n := range names {
		if base, ok := strings.CutSuffix(n, ".html"); ok && !have[base+".txt"] {
			t.Errorf("%s has no text part %s.txt", n, base)
		}
	}
}

// TestDefaultsAreLanguageNeutral keeps the words in the language files:
// a default template written in one language would show that language to
// every reader of another.
func TestDefaultsAreLanguageNeutral(t *testing.T) {
	for _, fsys := range []fs.FS{Mail(), Pages()} {
		names, err := fs.Glob(fsys, "*.*")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.Count(n, ".") > 1 {
				t.Errorf("default template %s is written for one language; put its words in locales/*.yaml", n)
			}
		}
	}
}
