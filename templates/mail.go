// Package templates holds the embedded default templates: the mails sent to
// recipients and the pages they see. A campaign may override any of them file
// by file from its own directory.
package templates

import (
	"embed"
	"io/fs"
)

// mailFiles holds the default mail templates. Only the mail directory is
// embedded here so that page templates can live beside it with their own
// embed directive.
//
//go:embed mail
var mailFiles embed.FS

// Mail returns the default mail templates, named KIND.LOCALE.txt (text/template)
// and KIND.LOCALE.html (html/template), with KIND "initial" or "reminder".
func Mail() fs.FS {
	sub, err := fs.Sub(mailFiles, "mail")
	if err != nil {
		// fs.Sub fails only on an invalid path, and "mail" is a constant.
		panic(err)
	}
	return sub
}
