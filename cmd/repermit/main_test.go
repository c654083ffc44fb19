package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// cli runs the command line as the binary would and returns exit code,
// stdout and stderr.
type cli struct {
	t   *testing.T
	env map[string]string
	now time.Time
}

func newCLI(t *testing.T, r *redistest.Redis) *cli {
	t.Helper()
	// Port 0: a test server's admin listener must not meet another's.
	env := map[string]string{"REPERMIT_SECRET": strings.Repeat("s", 32), "REPERMIT_ADMIN_ADDR": "127.0.0.1:0"}
	if r != nil {
		env["REPERMIT_REDIS_URL"] = r.URL
		env["REPERMIT_PREFIX"] = r.Prefix
	}
	return &cli{t: t, env: env, now: time.Now()}
}

func (c *cli) run(args ...string) (int, string, string) {
	c.t.Helper()
	return c.runContext(context.Background(), args...)
}

func (c *cli) runContext(ctx context.Context, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := Run(ctx, args, Env{
		Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return c.env[k] },
		Now:    func() time.Time { return c.now },
	})
	return code, out.String(), errb.String()
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const campaignYAML = `id: %s
from: "ACME News <news@acme.example>"
subject: "Do you still want ACME News?"
recipients: recipients.csv
confirm_base_url: https://consent.acme.example
deadline: 30d
topics: [yoga, events]
controller:
  name: ACME Handels GmbH
  address: "Hauptstraße 1, 10115 Berlin, Germany"
  contact: privacy@acme.example
  privacy_url: https://acme.example/privacy
`

func TestValidateExampleIsLaunchable(t *testing.T) {
	code, out, errOut := newCLI(t, nil).run("validate", "../../config/examples/newsletter.yaml")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if !strings.Contains(out, "is launchable") {
		t.Errorf("stdout = %q", out)
	}
	if !strings.Contains(errOut, "recipients.csv:") {
		t.Errorf("row warnings lack CSV line numbers:\n%s", errOut)
	}
}

func TestValidateReportsEveryErrorWithItsLineAndExits2(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"campaign.yaml":  "id: Bad_ID\nfrom: nobody\nsubject: s\nrecipients: recipients.csv\nconfirm_base_url: https://x.example\ndeadline: 30x\ncolour: blue\n",
		"recipients.csv": "email\na@example.com\n",
	})
	code, _, errOut := newCLI(t, nil).run("validate", filepath.Join(dir, "campaign.yaml"))
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, errOut)
	}
	for _, want := range []string{"campaign.yaml:1:", "campaign.yaml:2:", "campaign.yaml:6:", "campaign.yaml:7:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	c := newCLI(t, nil)
	for _, args := range [][]string{{}, {"frobnicate"}, {"validate"}, {"status", "a", "b"}, {"export", "x", "--what", "everything"}, {"launch", "--bogus", "f"}} {
		if code, _, _ := c.run(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestLaunchStatusControlAndExports(t *testing.T) {
	r := redistest.New(t)
	c := newCLI(t, r)
	var rows strings.Builder
	rows.WriteString("email,name,locale\n")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&rows, "p%d@example.com,Person %d,de\n", i, i)
	}
	rows.WriteString("broken,No Address,en\np1@example.com,Dup,en\n")
	dir := writeFiles(t, map[string]string{"campaign.yaml": fmt.Sprintf(campaignYAML, "cli-test"), "recipients.csv": rows.String()})
	path := filepath.Join(dir, "campaign.yaml")

	code, out, errOut := c.run("launch", path, "--json")
	if code != 0 {
		t.Fatalf("launch exit %d: %s", code, errOut)
	}
	var res repermit.ImportResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("launch --json printed %q: %v", out, err)
	}
	if want := (repermit.ImportResult{Campaign: "cli-test", Imported: 500, SkippedInvalid: 1, SkippedDuplicate: 1}); res != want {
		t.Errorf("launch = %+v, want %+v", res, want)
	}
	if code, _, errOut := c.run("launch", path); code != 2 || !strings.Contains(errOut, "exists") {
		t.Errorf("relaunch: exit %d, stderr %q; want 2 and a clear message", code, errOut)
	}

	// Answer through the store as the web pages would.
	st := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	if _, err := st.Record(ctx, redisstore.Answer{Campaign: "cli-test", Index: 3, State: repermit.StateConfirmed, Topics: []string{"yoga"}, At: c.now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Record(ctx, redisstore.Answer{Campaign: "cli-test", Index: 4, State: repermit.StateDeclined, At: c.now}); err != nil {
		t.Fatal(err)
	}

	code, out, _ = c.run("status", "cli-test", "--json")
	if code != 0 {
		t.Fatalf("status exit %d", code)
	}
	var status struct {
		Campaign string
		State    string
		Counts   map[string]int64
		Topics   map[string]int64
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatalf("status --json printed %q: %v", out, err)
	}
	var sum int64
	for _, n := range status.Counts {
		sum += n
	}
	if status.State != "running" || sum != 500 || status.Counts["confirmed"] != 1 || status.Counts["declined"] != 1 || len(status.Counts) != len(repermit.States()) ||
		status.Topics["yoga"] != 1 || status.Topics["events"] != 0 || len(status.Topics) != 2 {
		t.Errorf("status = %+v (sum %d)", status, sum)
	}
	if code, out, _ := c.run("status", "cli-test"); code != 0 || !strings.Contains(out, "confirmed") {
		t.Errorf("status view: exit %d\n%s", code, out)
	}
	if code, _, _ := c.run("status", "no-such-campaign"); code != 2 {
		t.Errorf("status of an unknown campaign: exit %d, want 2", code)
	}

	for _, step := range []struct {
		cmd  string
		code int
		want repermit.CampaignStatus
	}{
		{"pause", 0, repermit.StatusPaused},
		{"pause", 0, repermit.StatusPaused}, // idempotent
		{"resume", 0, repermit.StatusRunning},
		{"cancel", 0, repermit.StatusCancelled},
		{"resume", 2, repermit.StatusCancelled}, // cancel is for good
	} {
		if code, _, errOut := c.run(step.cmd, "cli-test"); code != step.code {
			t.Errorf("%s: exit %d, want %d (%s)", step.cmd, code, step.code, errOut)
		}
		got, err := st.Campaign(ctx, "cli-test")
		if err != nil || got.Status != step.want {
			t.Errorf("after %s: status %v (%v), want %s", step.cmd, got.Status, err, step.want)
		}
	}

	code, out, errOut = c.run("export", "cli-test", "--what", "confirmed")
	if code != 0 {
		t.Fatalf("export confirmed: exit %d: %s", code, errOut)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("confirmed export does not parse: %v\n%s", err, out)
	}
	if len(recs) != 2 || recs[1][0] != "p3@example.com" || recs[1][4] != "yoga" || len(recs[1][6]) != 64 {
		t.Errorf("confirmed export = %q", recs)
	}
	code, out, _ = c.run("export", "cli-test", "--what", "suppressed")
	if code != 0 || !strings.Contains(out, `"`+repermit.AddressHash("p4@example.com")+`","declined",`) {
		t.Errorf("suppressed export: exit %d\n%s", code, out)
	}
}

// TestValidateCountsTheRowsLaunchWouldImport checks that validate reports
// the same figures launch then imports, on a file with good, invalid,
// duplicate and suppressed rows.
func TestValidateCountsTheRowsLaunchWouldImport(t *testing.T) {
	for _, tc := range []struct {
		name                           string
		good, invalid, dup, suppressed int
	}{
		{"good rows only", 3, 0, 0, 0},
		{"every kind of row", 40, 2, 3, 1},
		{"nothing launchable", 0, 1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rows strings.Builder
			rows.WriteString("email,name\n")
			for i := 0; i < tc.good; i++ {
				fmt.Fprintf(&rows, "v%d@example.com,V %d\n", i, i)
			}
			for i := 0; i < tc.invalid; i++ {
				fmt.Fprintf(&rows, "not-an-address-%d,X\n", i)
			}
			for i := 0; i < tc.dup; i++ {
				rows.WriteString("v0@example.com,Again\n")
			}
			var supp strings.Builder
			supp.WriteString("email\n")
			for i := 0; i < tc.suppressed; i++ {
				fmt.Fprintf(&rows, "s%d@example.com,S\n", i)
				fmt.Fprintf(&supp, "s%d@example.com\n", i)
			}
			dir := writeFiles(t, map[string]string{
				"campaign.yaml":   fmt.Sprintf(campaignYAML, "counted") + "suppression: suppression.csv\n",
				"recipients.csv":  rows.String(),
				"suppression.csv": supp.String(),
			})
			path := filepath.Join(dir, "campaign.yaml")
			r := redistest.New(t)
			c := newCLI(t, r)
			code, out, errOut := c.run("validate", path)
			if code != 0 {
				t.Fatalf("validate: exit %d: %s", code, errOut)
			}
			want := fmt.Sprintf("launchable: %d recipients, %d invalid, %d duplicate, %d suppressed rows skipped", tc.good, tc.invalid, tc.dup, tc.suppressed)
			if !strings.Contains(out, want) {
				t.Errorf("validate says %q, want %q", out, want)
			}
			code, out, errOut = c.run("launch", path, "--json")
			if code != 0 {
				t.Fatalf("launch: exit %d: %s", code, errOut)
			}
			var res repermit.ImportResult
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatal(err)
			}
			if res.Imported != int64(tc.good) {
				t.Errorf("launch imported %d, validate promised %d", res.Imported, tc.good)
			}
		})
	}
}

// TestUsageNamesEveryVariable: `repermit help` lists every environment
// variable the command reads.
func TestUsageNamesEveryVariable(t *testing.T) {
	_, _, errOut := newCLI(t, nil).run("help")
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	read := regexp.MustCompile(`Getenv\("(REPERMIT_[A-Z_]+)"\)`).FindAllStringSubmatch(string(src), -1)
	if len(read) < 5 {
		t.Fatalf("found only %d variables read in main.go", len(read))
	}
	for _, m := range read {
		if !strings.Contains(errOut, m[1]) {
			t.Errorf("usage does not name %s:\n%s", m[1], errOut)
		}
	}
}

// TestBenchListWritesALaunchableList: the list `bench list` writes for
// measuring launch validates with every row importable, with and without
// waves.
func TestBenchListWritesALaunchableList(t *testing.T) {
	for _, waves := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "list")
		args := []string{"bench", "list", "--rows", "500", dir}
		if waves {
			args = []string{"bench", "list", "--rows", "500", "--waves", dir}
		}
		c := newCLI(t, nil)
		if code, _, errOut := c.run(args...); code != 0 {
			t.Fatalf("bench list: exit %d\n%s", code, errOut)
		}
		code, out, errOut := c.run("validate", filepath.Join(dir, "campaign.yaml"))
		if code != 0 || !strings.Contains(out, "launchable: 500 recipients, 0 invalid, 0 duplicate") {
			t.Fatalf("validate (waves %v): exit %d\nstdout: %s\nstderr: %s", waves, code, out, errOut)
		}
		yaml, _ := os.ReadFile(filepath.Join(dir, "campaign.yaml"))
		if got := strings.Contains(string(yaml), "waves:"); got != waves {
			t.Errorf("campaign file has waves: %v, want %v", got, waves)
		}
	}
}
