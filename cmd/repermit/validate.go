package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/repermit/repermit/launch"
	"github.com/repermit/repermit/mailer"
)

func runValidate(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	f, rep, err := launch.Validate(ctx, pos[0], launch.Options{Now: env.Now(), CheckTemplates: checkTemplates})
	if err != nil {
		return err
	}
	printWarnings(env, rep)
	fmt.Fprintf(env.Stdout, "%s: campaign %q is launchable: %d recipients, %d invalid, %d duplicate, %d suppressed rows skipped\n",
		pos[0], f.Campaign.ID, rep.Imported, rep.SkippedInvalid, rep.SkippedDuplicate, rep.SkippedSuppressed)
	return nil
}

func printWarnings(env Env, rep launch.Report) {
	for _, w := range rep.Warnings {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(env.Stderr, "warning: … and %d more skipped rows\n", rep.Omitted)
	}
}

// checkTemplates refuses templates that lack the text part or the confirm
// link, so a campaign never launches with a mail that cannot be answered.
func checkTemplates(dir string) error {
	t, err := mailer.LoadTemplates(dir)
	if err != nil {
		return err
	}
	return t.Check()
}
