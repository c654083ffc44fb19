package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/launch"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/web"
)

func runValidate(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	f, rep, err := launch.Validate(ctx, pos[0], launch.Options{Now: env.Now(), CheckTemplates: checkTemplates})
	printWarnings(env, rep)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: campaign %q is launchable: %d recipients, %d invalid, %d duplicate, %d suppressed rows skipped\n",
		pos[0], f.Campaign.ID, rep.Imported, rep.SkippedInvalid, rep.SkippedDuplicate, rep.SkippedSuppressed)
	fmt.Fprintf(env.Stdout, "languages: %s (mails and pages of each rendered with sample data)\n", localeCounts(rep.Locales))
	return nil
}

// localeCounts writes "da 120, de 80, en 1000" with the language's name.
func localeCounts(m map[string]int64) string {
	locs := make([]string, 0, len(m))
	for l := range m {
		locs = append(locs, l)
	}
	slices.Sort(locs)
	parts := make([]string, len(locs))
	for i, l := range locs {
		name, _ := locale.Default().Message(l, "language")
		parts[i] = fmt.Sprintf("%s (%s) %d", l, name, m[l])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func printWarnings(env Env, rep launch.Report) {
	for _, w := range rep.Warnings {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(env.Stderr, "warning: … and %d more skipped rows\n", rep.Omitted)
	}
}

// checkTemplates renders the mails and pages of a campaign once in each
// locale its recipients read, so a campaign never launches with a mail
// that cannot be answered or a page that answers 500.
func checkTemplates(c *repermit.Campaign, locales []string) error {
	t, err := mailer.LoadTemplates(c.TemplatesDir)
	if err != nil {
		return err
	}
	if err := t.CheckCampaign(c, locales); err != nil {
		return err
	}
	return web.CheckPages(c, locales)
}
