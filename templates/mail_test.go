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
	for _, want := range []string{"initial.en.txt", "initial.en.html", "reminder.en.txt", "reminder.en.html"} {
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
