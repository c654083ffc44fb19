package templates

import (
	"embed"
	"io/fs"
)

// localeFiles holds one file of strings per language.
//
//go:embed locales
var localeFiles embed.FS

// Locales returns the strings of the default mails and pages, one YAML file
// per language named LOCALE.yaml (en.yaml, de.yaml, …): a flat mapping of
// message keys to text with {placeholders}. Adding a language is adding a
// file; every file must have exactly the keys and placeholders of en.yaml.
func Locales() fs.FS {
	sub, err := fs.Sub(localeFiles, "locales")
	if err != nil {
		// fs.Sub fails only on an invalid path, and "locales" is a constant.
		panic(err)
	}
	return sub
}
