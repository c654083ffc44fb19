// Command repermit runs re-permission campaigns; see README.md.
//
// This file parses the command line and the environment; package app wires
// the packages together from the app.Settings serve.go reads. It holds
// no logic of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/app"
	"github.com/repermit/repermit/redisstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first Ctrl-C or SIGTERM cancels ctx and every command winds down;
	// after it the signals get their default action back, so a second one
	// ends a process that is stuck anyway.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := Run(ctx, os.Args[1:], Env{
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Getenv: os.Getenv,
		Now:    time.Now,
	})
	stop()
	os.Exit(code)
}

// Env is what a command sees of the outside world; tests build their own.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Now            func() time.Time
}

// Settings are the server settings of DESIGN.md, from the environment.
type Settings struct {
	RedisURL   string // REPERMIT_REDIS_URL
	SMTPURL    string // REPERMIT_SMTP_URL
	Secret     string // REPERMIT_SECRET
	HTTPAddr   string // REPERMIT_HTTP_ADDR
	AdminToken string // REPERMIT_ADMIN_TOKEN: at least 32 bytes, or unset
	AdminAddr  string // REPERMIT_ADMIN_ADDR: listener of /admin and /metrics, default 127.0.0.1:8081
	// TrustedProxies (REPERMIT_TRUSTED_PROXIES) are CIDRs of reverse
	// proxies whose forwarding headers are believed.
	TrustedProxies string
	// TLSCert and TLSKey (REPERMIT_TLS_CERT, REPERMIT_TLS_KEY) are PEM
	// files; with both the recipients' listener speaks HTTPS.
	TLSCert, TLSKey string
	Prefix          string // REPERMIT_PREFIX: Redis key prefix and asynq queue, default "repermit"
}

func (e Env) settings() Settings {
	s := Settings{
		RedisURL:   e.Getenv("REPERMIT_REDIS_URL"),
		SMTPURL:    e.Getenv("REPERMIT_SMTP_URL"),
		Secret:     e.Getenv("REPERMIT_SECRET"),
		HTTPAddr:   e.Getenv("REPERMIT_HTTP_ADDR"),
		AdminToken: e.Getenv("REPERMIT_ADMIN_TOKEN"),
		AdminAddr:  e.Getenv("REPERMIT_ADMIN_ADDR"),

		TrustedProxies: e.Getenv("REPERMIT_TRUSTED_PROXIES"),
		TLSCert:        e.Getenv("REPERMIT_TLS_CERT"),
		TLSKey:         e.Getenv("REPERMIT_TLS_KEY"),
		Prefix:         e.Getenv("REPERMIT_PREFIX"),
	}
	if s.HTTPAddr == "" {
		s.HTTPAddr = "127.0.0.1:8080"
	}
	if s.AdminAddr == "" {
		s.AdminAddr = "127.0.0.1:8081"
	}
	if s.Prefix == "" {
		s.Prefix = "repermit"
	}
	return s
}

type command struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

func commands() []command {
	return []command{
		{"demo", "[--recipients N] [--keep]", "run the whole engine embedded with a sample campaign", runDemo},
		{"validate", "FILE", "check a campaign file and its CSV without touching Redis", runValidate},
		{"preview", "FILE --locale L [--out DIR]", "write a campaign's mails (.eml) and pages (.html) for one locale", runPreview},
		{"launch", "FILE [--json]", "validate, import and schedule a campaign", runLaunch},
		{"worker", "", "send mails, reminders and expire at the deadline", runWorker},
		{"web", "", "serve the recipients' pages, /metrics, /healthz and /admin", runWeb},
		{"serve", "", "worker and web in one process", runServe},
		{"status", "ID [--json] [--watch]", "show a campaign's funnel", runStatus},
		{"pause", "ID", "stop sending until resumed", runControl(repermit.StatusPaused, repermit.StatusRunning)},
		{"resume", "ID [--reset-thresholds]", "continue a paused campaign (after a stop of its waves: with the next wave)", runControl(repermit.StatusRunning, repermit.StatusPaused)},
		{"cancel", "ID", "stop sending for good (the deadline still expires)", runControl(repermit.StatusCancelled, repermit.StatusRunning, repermit.StatusPaused)},
		{"export", "ID --what confirmed|unreached|suppressed|ledger", "write a CSV (ledger: JSON lines) to stdout", runExport},
		{"verify-ledger", "FILE --pubkey KEY [--witness FILE]", "check an exported consent log: records, inclusion, signed checkpoints", runVerifyLedger},
		{"ledger-key", "NAME", "make the consent log's signing key pair", runLedgerKey},
		{"proof", "EMAIL [--campaign ID] [--bundle FILE]", "a person's consent history; --bundle writes a proof", runProof},
		{"verify-proof", "FILE --pubkey KEY", "check a proof bundle offline", runVerifyProof},
		{"migrate", "", "move data of older layouts into the current one (idempotent)", runMigrate},
		{"bench", "send|import|expire|web [--json], list DIR", "measure against a baseline in the same run", runBench},
	}
}

// Run runs one command line and returns the exit code: 0 ok, 1 runtime
// failure, 2 bad input.
func Run(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, env, args[1:])
			return report(env.Stderr, err)
		}
	}
	fmt.Fprintf(env.Stderr, "repermit: unknown command %q\n\n", args[0])
	usage(env.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: repermit COMMAND [ARGS]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %-38s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(w, "\nEnvironment: REPERMIT_REDIS_URL, REPERMIT_SMTP_URL, REPERMIT_SECRET, REPERMIT_HTTP_ADDR, REPERMIT_ADMIN_ADDR, REPERMIT_ADMIN_TOKEN,")
	fmt.Fprintln(w, "REPERMIT_TRUSTED_PROXIES, REPERMIT_TLS_CERT, REPERMIT_TLS_KEY, REPERMIT_LEDGER_KEY, REPERMIT_LEDGER_PUBKEY,")
	fmt.Fprintln(w, "REPERMIT_LEDGER_WITNESS, REPERMIT_PREFIX.")
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 runtime failure, 2 bad input.")
}

// errUsage marks a command line mistake; its message is printed as is.
var errUsage = errors.New("usage")

func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// report prints err and maps it to the exit code, in this one place.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		fmt.Fprintf(stderr, "repermit: %s\n", strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "repermit: interrupted")
		return 1
	}
	switch repermit.ErrorCode(err) {
	case repermit.EINVALID, repermit.ECONFLICT, repermit.ENOTFOUND:
		fmt.Fprintln(stderr, repermit.ErrorMessage(err))
		return 2
	default:
		fmt.Fprintf(stderr, "repermit: %v\n", err)
		return 1
	}
}

// parse parses flags that may stand before, between or after the
// positional arguments, and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, usageError("%s: flags:%s", fs.Name(), flagList(fs))
			}
			return nil, usageError("%s: %v", fs.Name(), err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != positional {
		return nil, usageError("%s: want %d argument(s), got %d (flags:%s)", fs.Name(), positional, len(pos), flagList(fs))
	}
	return pos, nil
}

func flagList(fs *flag.FlagSet) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, " --"+f.Name) })
	sort.Strings(names)
	if len(names) == 0 {
		return " none"
	}
	return strings.Join(names, "")
}

// openStore connects to REPERMIT_REDIS_URL (default the local server) and
// checks that it answers.
func openStore(ctx context.Context, s Settings) (*redisstore.Store, func(), error) {
	a, err := app.New(ctx, app.Settings{RedisURL: s.RedisURL, Prefix: s.Prefix})
	if err != nil {
		return nil, nil, err
	}
	return a.Store, a.Close, nil
}

// newLogger logs JSON when stderr is not a terminal, text otherwise.
func newLogger(w io.Writer) *slog.Logger {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
