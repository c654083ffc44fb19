package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"github.com/repermit/repermit/app"
	"github.com/repermit/repermit/launch"
)

func runLaunch(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("launch", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the import counts as JSON")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	s := env.settings()
	a, err := app.New(ctx, app.Settings{RedisURL: s.RedisURL, Prefix: s.Prefix})
	if err != nil {
		return err
	}
	defer a.Close()
	opt := launch.Options{Now: env.Now(), CheckTemplates: checkTemplates}
	if isTerminal(env.Stderr) && !*asJSON {
		opt.Progress = progressBar(env)
	}
	rep, err := launch.Launch(ctx, pos[0], a.Store, a.Scheduler(), opt)
	if opt.Progress != nil {
		fmt.Fprintln(env.Stderr)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(rep.ImportResult)
	}
	printWarnings(env, rep)
	fmt.Fprintf(env.Stdout, "launched %s: %d imported, %d invalid, %d duplicate, %d suppressed skipped\n",
		rep.Campaign, rep.Imported, rep.SkippedInvalid, rep.SkippedDuplicate, rep.SkippedSuppressed)
	return nil
}

// progressBar draws the import's progress on a terminal line.
func progressBar(env Env) launch.Progress {
	const width = 30
	return func(done, total int64) {
		if total <= 0 {
			return
		}
		n := int(done * width / total)
		fmt.Fprintf(env.Stderr, "\rimporting [%s%s] %3d%%", strings.Repeat("#", n), strings.Repeat(" ", width-n), done*100/total)
	}
}
