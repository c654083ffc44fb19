package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/repermit/repermit"
)

// runControl changes a campaign's status; workers notice within seconds
// because every claim checks it atomically.
func runControl(to repermit.CampaignStatus, from ...repermit.CampaignStatus) func(context.Context, Env, []string) error {
	return func(ctx context.Context, env Env, args []string) error {
		fs := flag.NewFlagSet(verbOf(to), flag.ContinueOnError)
		var reset *bool
		if to == repermit.StatusRunning {
			reset = fs.Bool("reset-thresholds", false, "after the waves stopped the campaign: count its figures anew from the next wave (the list was cleaned)")
		}
		pos, err := parse(fs, args, 1)
		if err != nil {
			return err
		}
		st, closeStore, err := openStore(ctx, env.settings())
		if err != nil {
			return err
		}
		defer closeStore()
		if reset != nil {
			err = st.Resume(ctx, pos[0], *reset)
		} else {
			err = st.SetStatus(ctx, pos[0], to, from...)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s is %s\n", pos[0], to)
		return nil
	}
}

func verbOf(s repermit.CampaignStatus) string {
	switch s {
	case repermit.StatusPaused:
		return "pause"
	case repermit.StatusRunning:
		return "resume"
	default:
		return "cancel"
	}
}
