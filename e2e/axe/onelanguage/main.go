// Command onelanguage fails when a page's visible text, as headless
// Chromium rendered it, has a phrase of another language than the page's
// own: the check behind "no English on a Danish page". e2e/axe/run hands
// it the text check.mjs saved, one directory per locale
// (DIR/da/page-landing.txt: the title, then the body's innerText).
//
// It reads what the browser shows rather than the HTML the server sent,
// so that a phrase in the markup that no reader sees (a hidden element,
// an attribute) does not count and one that only the rendered page shows
// does.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/repermit/repermit/locale"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: onelanguage DIR (DIR/LOCALE/*.txt: each page's visible text)")
		os.Exit(2)
	}
	pages, problems, err := check(os.DirFS(os.Args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "onelanguage:", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	fmt.Printf("one language a page: %d pages, %d phrases of another language\n", pages, len(problems))
	if len(problems) > 0 {
		os.Exit(1)
	}
}

// check reads every LOCALE/NAME.txt of fsys and returns how many pages it
// read and, for each phrase of another language's strings that a page
// shows, "LOCALE/NAME.txt: LANG: phrase".
func check(fsys fs.FS) (pages int, problems []string, err error) {
	cat := locale.Default()
	files, err := fs.Glob(fsys, "*/*.txt")
	if err != nil {
		return 0, nil, err
	}
	if len(files) == 0 {
		// A check that read nothing must not pass.
		return 0, nil, errors.New("no LOCALE/*.txt page texts found")
	}
	for _, f := range files {
		loc := path.Dir(f)
		if !cat.Has(loc) {
			return 0, nil, fmt.Errorf("%s: %q is not a language of the strings files", f, loc)
		}
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return 0, nil, err
		}
		pages++
		for _, p := range cat.Foreign(string(b), loc) {
			problems = append(problems, f+": "+p)
		}
	}
	return pages, problems, nil
}
