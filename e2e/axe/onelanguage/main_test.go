package main

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/repermit/repermit/locale"
)

func message(t *testing.T, loc, key string) string {
	t.Helper()
	m, ok := locale.Default().Message(loc, key)
	if !ok {
		t.Fatalf("no %s in %s", key, loc)
	}
	return m
}

func TestCheckFindsEnglishOnADanishPage(t *testing.T) {
	danish := message(t, "da", "error.404.title") + "\n" + message(t, "da", "error.404.body")
	english := message(t, "en", "error.404.heading")
	tests := []struct {
		name    string
		files   map[string]string
		pages   int
		want    []string // substrings, one for each problem
		wantErr string
	}{
		{"Danish only", map[string]string{"da/page-error-404.txt": danish}, 1, nil, ""},
		{"an English heading on a Danish page", map[string]string{
			"da/page-error-404.txt": danish + "\n" + english,
			"en/page-error-404.txt": english,
		}, 2, []string{"da/page-error-404.txt: en: " + english}, ""},
		{"a Danish page filed as German", map[string]string{"de/page-error-404.txt": danish}, 1, []string{"de/page-error-404.txt: da: "}, ""},
		{"nothing to read", map[string]string{"da/page.html": danish}, 0, nil, "no LOCALE/*.txt"},
		{"no such language", map[string]string{"xx/page.txt": danish}, 0, nil, `"xx" is not a language`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, text := range tt.files {
				fsys[name] = &fstest.MapFile{Data: []byte(text)}
			}
			pages, problems, err := check(fsys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pages != tt.pages {
				t.Errorf("%d pages read, want %d", pages, tt.pages)
			}
			if len(problems) < len(tt.want) || (len(tt.want) == 0 && len(problems) > 0) {
				t.Fatalf("problems %q, want %q", problems, tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(problems[i], w) {
					t.Errorf("problem %d = %q, want %q in it", i, problems[i], w)
				}
			}
		})
	}
}
