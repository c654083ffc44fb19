package main

import (
	"context"
	"flag"
	"fmt"
)

// runMigrate moves data of older layouts into the current one: the
// suppression list of one big hash into its 65,536 buckets. It can be
// interrupted and run again; a second run moves nothing.
func runMigrate(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	st, closeStore, err := openStore(ctx, env.settings())
	if err != nil {
		return err
	}
	defer closeStore()
	n, err := st.MigrateSuppression(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "suppression list: %d entries moved\n", n)
	return nil
}
