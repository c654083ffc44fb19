package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/ledgerio"
)

// ledgerSigner reads REPERMIT_LEDGER_KEY; nil when unset and not required.
// It refuses the link secret: the two keys guard different things and
// must not fall together.
func ledgerSigner(env Env, required bool) (note.Signer, error) {
	skey := strings.TrimSpace(env.Getenv("REPERMIT_LEDGER_KEY"))
	if skey == "" {
		if required {
			return nil, usageError("REPERMIT_LEDGER_KEY is not set (make one with: repermit ledger-key NAME)")
		}
		return nil, nil
	}
	for _, secret := range strings.Split(env.Getenv("REPERMIT_SECRET"), ",") {
		if secret != "" && strings.TrimSpace(secret) == skey {
			return nil, usageError("REPERMIT_LEDGER_KEY must not be the link secret REPERMIT_SECRET")
		}
	}
	s, err := consentlog.NewSigner(skey)
	if err != nil {
		return nil, usageError("REPERMIT_LEDGER_KEY: %v", err)
	}
	return s, nil
}

// pubkey reads --pubkey (or REPERMIT_LEDGER_PUBKEY when the flag is empty).
func pubkey(env Env, flagValue string) (note.Verifier, error) {
	k := flagValue
	if k == "" {
		k = env.Getenv("REPERMIT_LEDGER_PUBKEY")
	}
	if k == "" {
		return nil, usageError("--pubkey KEY is required (the REPERMIT_LEDGER_PUBKEY line of repermit ledger-key)")
	}
	v, err := consentlog.NewVerifier(k)
	if err != nil {
		return nil, usageError("--pubkey: %v", err)
	}
	return v, nil
}

// failed turns a verifier's finding into a runtime failure (exit 1): the
// input was read fine, it is the evidence that does not hold.
func failed(err error) error {
	var old *ledgerio.OldKindError
	if errors.As(err, &old) {
		return errors.New(old.Error())
	}
	return errors.New(repermit.ErrorMessage(err))
}

func runLedgerKey(_ context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("ledger-key", flag.ContinueOnError)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, pos[0])
	if err != nil {
		return usageError("ledger-key: %v (a name is letters, digits and punctuation, without + or spaces)", err)
	}
	fmt.Fprintf(env.Stdout, "REPERMIT_LEDGER_KEY=%s\nREPERMIT_LEDGER_PUBKEY=%s\n", skey, vkey)
	return nil
}

func runVerifyLedger(_ context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("verify-ledger", flag.ContinueOnError)
	key := fs.String("pubkey", "", "the REPERMIT_LEDGER_PUBKEY the log's checkpoints are signed with")
	witness := fs.String("witness", "", "a file of checkpoints sent out (JSON lines), each must match the log")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	v, err := pubkey(env, *key)
	if err != nil {
		return err
	}
	var witnessed []consentlog.Checkpoint
	if *witness != "" {
		wf, err := repermit.OpenFile(*witness)
		if err != nil {
			return repermit.Errorf(repermit.EINVALID, "%s: %v", *witness, err)
		}
		witnessed, err = ledgerio.ReadWitness(wf, *witness, v)
		wf.Close()
		if err != nil {
			return failed(err)
		}
	}
	f, err := repermit.OpenFile(pos[0])
	if err != nil {
		return repermit.Errorf(repermit.EINVALID, "%s: %v", pos[0], err)
	}
	defer f.Close()
	sum, err := ledgerio.Verify(f, pos[0], v, witnessed)
	if err != nil {
		return failed(err)
	}
	fmt.Fprintf(env.Stdout, "%s: consent log of %s intact: %d records, %d signed checkpoints, the last of %s", pos[0], sum.Campaign, sum.Records, sum.Checkpoints, sum.Last.Time.Format("2006-01-02T15:04:05Z"))
	if len(witnessed) > 0 {
		fmt.Fprintf(env.Stdout, ", %d witnessed checkpoints match", len(witnessed))
	}
	fmt.Fprintln(env.Stdout)
	return nil
}

func runProof(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("proof", flag.ContinueOnError)
	campaign := fs.String("campaign", "", "only this campaign")
	bundle := fs.String("bundle", "", "write a self-contained proof bundle to this file")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	signer, err := ledgerSigner(env, false)
	if err != nil {
		return err
	}
	st, closeStore, err := openStore(ctx, env.settings())
	if err != nil {
		return err
	}
	defer closeStore()
	res, err := ledgerio.Proof(ctx, st, pos[0], *campaign, signer, env.Now())
	if err != nil {
		return err
	}
	b := res.Bundle
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	printHistory(env.Stdout, b)
	for _, id := range res.Legacy {
		fmt.Fprintf(env.Stdout, "campaign %s: launched before the consent log; its records name recipients by number only and cannot be found by address\n", id)
	}
	if *bundle != "" {
		if err := os.WriteFile(*bundle, data, 0o600); err != nil {
			return fmt.Errorf("proof: %w", err)
		}
		fmt.Fprintf(env.Stdout, "proof bundle written to %s (check it with: repermit verify-proof %s --pubkey KEY)\n", *bundle, *bundle)
	}
	return nil
}

// printHistory prints a bundle's records, one block each.
func printHistory(w io.Writer, b *consentlog.Bundle) {
	n := 0
	for _, c := range b.Campaigns {
		n += len(c.Records)
	}
	fmt.Fprintf(w, "%s: %d consent records in %d campaigns\n", b.Address, n, len(b.Campaigns))
	texts := map[string]int{}
	for _, wd := range b.Wordings {
		texts[wd.SHA256] = len(wd.Text)
	}
	for _, c := range b.Campaigns {
		for _, pr := range c.Records {
			rec, err := repermit.ParseRecord([]byte(pr.Record))
			if err != nil {
				fmt.Fprintf(w, "  %s: unreadable record: %v\n", c.Campaign, err)
				continue
			}
			fmt.Fprintf(w, "%s  %s  record %d  %s", rec.At.UTC().Format("2006-01-02T15:04:05.000Z"), c.Campaign, rec.Seq, rec.Answer)
			if len(rec.Topics) > 0 || len(rec.TopicsBefore) > 0 {
				fmt.Fprintf(w, "  topics %s (before: %s)", orNone(rec.Topics), orNone(rec.TopicsBefore))
			}
			fmt.Fprintf(w, "\n    IP %s, user agent %q\n", orDash(rec.IP), rec.UserAgent)
			switch l, ok := texts[rec.Wording]; {
			case rec.Wording == "":
				fmt.Fprintf(w, "    wording: none recorded (one-click unsubscribe from the mail client)\n")
			case ok:
				fmt.Fprintf(w, "    wording sha256 %s, kept verbatim (%d bytes, in the bundle)\n", rec.Wording, l)
			default:
				fmt.Fprintf(w, "    wording sha256 %s, text not kept (answered before wordings were kept)\n", rec.Wording)
			}
		}
		for _, m := range c.Mail {
			mail, loc := mailWordingLine(m.Text, "mail: "), mailWordingLine(m.Text, "locale: ")
			fmt.Fprintf(w, "  %s  mail %s (%s) sha256 %s, kept verbatim (%d bytes, in the bundle)\n", c.Campaign, mail, loc, m.SHA256, len(m.Text))
		}
	}
}

// mailWordingLine returns the value of a mail wording's header line that
// starts with prefix ("?" when it has none).
func mailWordingLine(text, prefix string) string {
	head, _, _ := strings.Cut(text, "\n\n")
	for _, l := range strings.Split(head, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return "?"
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runVerifyProof(_ context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("verify-proof", flag.ContinueOnError)
	key := fs.String("pubkey", "", "the REPERMIT_LEDGER_PUBKEY the checkpoints are signed with")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	v, err := pubkey(env, *key)
	if err != nil {
		return err
	}
	f, err := repermit.OpenFile(pos[0])
	if err != nil {
		return repermit.Errorf(repermit.EINVALID, "%s: %v", pos[0], err)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<20))
	f.Close()
	if err != nil {
		return repermit.Errorf(repermit.EINVALID, "%s: %v", pos[0], err)
	}
	_, b, err := consentlog.VerifyBundle(data, v)
	if err != nil {
		return failed(repermit.Errorf(repermit.EINVALID, "%s: %v", pos[0], err))
	}
	printHistory(env.Stdout, b)
	fmt.Fprintf(env.Stdout, "%s: proof intact: every record is in its campaign's log under a checkpoint signed by %s\n", pos[0], v.Name())
	return nil
}
