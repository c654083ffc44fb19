package main

import (
	"bufio"
	"context"
	"flag"

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
		signer, serr := ledgerSigner(env, false)
		if serr != nil {
			return serr
		}
		err = ledgerio.Export(ctx, w, st, pos[0], signer, env.Now())
	default:
		return usageError("export: --what must be confirmed, suppressed, unreached or ledger, not %q", *what)
	}
	if err != nil {
		return err
	}
	return w.Flush()
}
