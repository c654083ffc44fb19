package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/config"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/web"
)

// runPreview writes the mails (.eml) and pages (.html) of a campaign as a
// recipient of one locale gets them, with sample data, for a look before
// the launch. Nothing is written unless everything renders.
func runPreview(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("preview", flag.ContinueOnError)
	loc := fs.String("locale", "", "the recipients' locale, e.g. da or de-AT (required)")
	out := fs.String("out", "", "directory to write to (default preview-ID-LOCALE)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *loc == "" || locale.Normalize(*loc) == "" {
		return usageError("preview: --locale must be a locale like da or de-AT")
	}
	f, err := config.Load(pos[0], env.Now())
	if err != nil {
		return err
	}
	for _, w := range f.Warnings {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	c := &f.Campaign
	cat := locale.Default()
	if !cat.Known(*loc) {
		fmt.Fprintf(env.Stderr, "warning: no language file for locale %q; its recipients read %s (default_locale)\n", *loc, cat.Resolve(*loc, c.DefaultLocale))
	}
	reads := cat.Resolve(*loc, c.DefaultLocale)
	if errs, _ := f.CheckLocales(map[string]int64{reads: 1}); len(errs) > 0 {
		return errs
	}

	files := make(map[string][]byte)
	tpl, err := mailer.LoadTemplates(c.TemplatesDir)
	if err != nil {
		return err
	}
	kinds := []mailer.Kind{mailer.Initial}
	if len(c.Reminders) > 0 {
		kinds = append(kinds, mailer.Reminder(1))
	}
	for _, k := range kinds {
		d := mailer.SampleData(c, *loc)
		m, err := tpl.Build(d, k)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			return fmt.Errorf("preview: write %s mail: %w", k, err)
		}
		files["mail-"+k.String()+".eml"] = buf.Bytes()
	}
	pages, err := web.Preview(c, *loc)
	if err != nil {
		return err
	}
	for _, p := range pages {
		files["page-"+p.Name] = p.HTML
	}
	css, err := web.Stylesheet()
	if err != nil {
		return err
	}
	files[filepath.Join("static", "style.css")] = css

	dir := *out
	if dir == "" {
		dir = fmt.Sprintf("preview-%s-%s", c.ID, locale.Normalize(*loc))
	}
	if err := os.MkdirAll(filepath.Join(dir, "static"), 0o755); err != nil {
		return repermit.Errorf(repermit.EINVALID, "preview: %v", err)
	}
	for _, name := range sortedNames(files) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			return fmt.Errorf("preview: %w", err)
		}
		fmt.Fprintln(env.Stdout, path)
	}
	fmt.Fprintf(env.Stderr, "preview of %s for locale %s (written in %s): %d files in %s\n", c.ID, *loc, reads, len(files), dir)
	return nil
}

func sortedNames(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
