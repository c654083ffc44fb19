package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/export"
	"github.com/repermit/repermit/ledgerio"
)

func runExport(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	what := fs.String("what", "", "confirmed, suppressed, unreached or ledger")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	st, closeStore, err := openStore(ctx, env.settings())
	if err != nil {
		return err
	}
	defer closeStore()
	w := bufio.NewWriterSize(env.Stdout, 64<<10)
	switch *what {
	case "confirmed":
		err = export.Confirmed(ctx, w, st, pos[0])
	case "suppressed":
		err = export.Suppressed(ctx, w, st, pos[0])
	case "unreached":
		err = export.Unreached(ctx, w, st, pos[0])
	case "ledger":
		err = ledgerio.Export(ctx, w, st, pos[0])
	default:
		return usageError("export: --what must be confirmed, suppressed, unreached or ledger, not %q", *what)
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

func runVerifyLedger(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("verify-ledger", flag.ContinueOnError)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	f, err := repermit.OpenFile(pos[0])
	if err != nil {
		return repermit.Errorf(repermit.EINVALID, "%s: %v", pos[0], err)
	}
	defer f.Close()
	n, err := ledgerio.Verify(f, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: %d records, chain intact\n", pos[0], n)
	return nil
}
