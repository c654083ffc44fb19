package templates

import (
	"embed"
	"io/fs"
)

// pageFiles holds the default web page templates and the one stylesheet.
//
//go:embed pages
var pageFiles embed.FS

// Pages returns the default page templates (html/template) and style.css.
//
// Recipients' pages are named PAGE.LOCALE.html with PAGE one of landing
// (GET /c/TOKEN), result (after an answer), unsubscribe (GET /u/TOKEN) and
// error; each defines the templates "title" and "main", which layout.html
// wraps. A campaign overrides any of them file by file in its templates
// directory under pages/ (e.g. acme-templates/pages/landing.de.html); the
// web package documents the data each page receives. admin_*.html are the
// operators' pages and are not overridable.
func Pages() fs.FS {
	sub, err := fs.Sub(pageFiles, "pages")
	if err != nil {
		// fs.Sub fails only on an invalid path, and "pages" is a constant.
		panic(err)
	}
	return sub
}
