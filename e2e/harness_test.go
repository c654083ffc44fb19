package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redistest"
)

// EnvMailpit names the Mailpit binary the tests start.
const EnvMailpit = "REPERMIT_TEST_MAILPIT"

// binary is the repermit binary TestMain builds; empty when the tests skip.
var binary string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if !enabled() {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "repermit-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "repermit")
		build := exec.Command("go", "build", "-o", binary, "../cmd/repermit")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build repermit: %v\n", err)
			return 1
		}
		return m.Run()
	}())
}

func enabled() bool {
	return os.Getenv(redistest.EnvURL) != "" && os.Getenv(EnvMailpit) != ""
}

// needReal skips the test unless CI's real parts are configured.
func needReal(t *testing.T) {
	t.Helper()
	if !enabled() {
		t.Skipf("end-to-end test needs a real redis-server and Mailpit: set %s (e.g. redis://127.0.0.1:6379/0) and %s (path to a mailpit binary); .ci/run sets both",
			redistest.EnvURL, EnvMailpit)
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// world is one test's deployment: its Redis prefix, secret, web address and
// SMTP server, handed to every repermit process as environment.
type world struct {
	t        *testing.T
	dir      string
	redisURL string
	prefix   string
	smtpURL  string
	httpAddr string
	secret   string
	admin    string
	// extraEnv is appended to every process's environment.
	extraEnv []string
}

func newWorld(t *testing.T, redisURL, prefix, smtpURL string) *world {
	t.Helper()
	return &world{
		t:        t,
		dir:      t.TempDir(),
		redisURL: redisURL,
		prefix:   prefix,
		smtpURL:  smtpURL,
		httpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		secret:   "e2e-secret-0123456789abcdef0123456789abcdef",
		admin:    "e2e-admin-token-of-at-least-32-bytes",
	}
}

func (w *world) baseURL() string { return "http://" + w.httpAddr }

func (w *world) environ() []string {
	return append(append(os.Environ(),
		"REPERMIT_REDIS_URL="+w.redisURL,
		"REPERMIT_SMTP_URL="+w.smtpURL,
		"REPERMIT_SECRET="+w.secret,
		"REPERMIT_HTTP_ADDR="+w.httpAddr,
		"REPERMIT_PREFIX="+w.prefix,
		"REPERMIT_ADMIN_TOKEN="+w.admin,
		// A port of its own for the admin listener: worlds run in parallel.
		"REPERMIT_ADMIN_ADDR=127.0.0.1:0",
		// The consent log's signing key, made by repermit ledger-key for
		// the tests only.
		"REPERMIT_LEDGER_KEY=PRIVATE+KEY+e2e-consent+87a67d41+AbVTa5NCUOOkd33xuc8ZXCR+yaBMhtZLxoAcEzh0vww8",
		"REPERMIT_LEDGER_PUBKEY=e2e-consent+87a67d41+AZLALlQTj5nh370YAVA0w+mZsH4l2XSnqQnnbiGVnzgm",
	), w.extraEnv...)
}

// run runs one repermit command to its end and returns its stdout; a
// non-zero exit fails the test.
func (w *world) run(args ...string) string {
	w.t.Helper()
	out, code, stderr := w.runCode(args...)
	if code != 0 {
		w.t.Fatalf("repermit %s: exit %d\nstderr: %s", strings.Join(args, " "), code, stderr)
	}
	return out
}

func (w *world) runCode(args ...string) (stdout string, code int, stderr string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = w.environ()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode(), errb.String()
		}
		w.t.Fatalf("repermit %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0, errb.String()
}

// proc is a long-running repermit process (worker, web).
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start starts `repermit args…` in the background; the test's cleanup
// stops it, and prints the end of its log if the test failed.
func (w *world) start(name string, args ...string) *proc {
	w.t.Helper()
	p := &proc{t: w.t, name: name, log: filepath.Join(w.dir, name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = w.environ()
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		w.t.Fatalf("start repermit %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	w.t.Cleanup(func() {
		p.stop()
		if w.t.Failed() {
			w.t.Logf("--- end of %s log:\n%s", p.name, tail(p.log, 40))
		}
	})
	return p
}

// kill sends SIGKILL: no shutdown, no cleanup, as a crash.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a graceful exit, then kills.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Logf("%s did not stop within 20s of SIGTERM; killing it", p.name)
		p.kill()
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startWeb starts `repermit web` and waits until /healthz answers.
func (w *world) startWeb() *proc {
	w.t.Helper()
	p := w.start("web", "web")
	waitUntil(w.t, 20*time.Second, "web server answers /healthz", func() bool {
		if p.exited() {
			w.t.Fatalf("repermit web exited: %v\n%s", p.err, tail(p.log, 20))
		}
		resp, err := http.Get(w.baseURL() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// campaignSpec describes a campaign file the test writes.
type campaignSpec struct {
	ID        string
	N         int    // recipients r00000@… to r(N-1)@…
	Domains   int    // spread over this many domains, default 4
	Deadline  string // e.g. "20s"
	Reminders []string
	PerSecond int
	Topics    []string
	// Suppression lists addresses in the campaign's suppression file.
	Suppression []string
	// Extra is appended to the campaign file as it is (YAML: webhooks,
	// waves…).
	Extra string
	// Local, when set, starts every address's local part, so that
	// campaigns of one world have addresses of their own (a bounce in one
	// suppresses the address in all).
	Local string
}

func addr(i, domains int) string {
	if domains <= 0 {
		domains = 4
	}
	return fmt.Sprintf("r%05d@d%d.example.com", i, i%domains)
}

// writeCampaign writes the campaign file and its CSV and returns the
// campaign file's path.
func (w *world) writeCampaign(s campaignSpec) string {
	w.t.Helper()
	var csv bytes.Buffer
	bw := bufio.NewWriter(&csv)
	fmt.Fprintln(bw, "email,name,locale")
	for i := 0; i < s.N; i++ {
		fmt.Fprintf(bw, "%s%s,Recipient %d,en\n", s.Local, addr(i, s.Domains), i)
	}
	bw.Flush()
	dir := filepath.Join(w.dir, s.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	write("recipients.csv", csv.Bytes())
	var y strings.Builder
	fmt.Fprintf(&y, "id: %s\n", s.ID)
	fmt.Fprintf(&y, "from: \"E2E News <news@e2e.example>\"\n")
	fmt.Fprintf(&y, "subject: \"Do you still want E2E News?\"\n")
	fmt.Fprintf(&y, "recipients: recipients.csv\n")
	if len(s.Suppression) > 0 {
		write("suppression.csv", []byte("email\n"+strings.Join(s.Suppression, "\n")+"\n"))
		fmt.Fprintf(&y, "suppression: suppression.csv\n")
	}
	fmt.Fprintf(&y, "confirm_base_url: %s\n", w.baseURL())
	fmt.Fprintf(&y, "controller: {name: ACME Handels GmbH, address: \"Hauptstraße 1, 10115 Berlin\", contact: privacy@acme.example, privacy_url: https://acme.example/privacy}\n")
	fmt.Fprintf(&y, "deadline: %s\n", s.Deadline)
	if len(s.Reminders) > 0 {
		fmt.Fprintf(&y, "reminders: [%s]\n", strings.Join(s.Reminders, ", "))
	}
	ps := s.PerSecond
	if ps == 0 {
		ps = 1000
	}
	fmt.Fprintf(&y, "rate:\n  per_second: %d\n  per_domain_per_minute: {default: 10000000}\n", ps)
	if len(s.Topics) > 0 {
		fmt.Fprintf(&y, "topics: [%s]\n", strings.Join(s.Topics, ", "))
	}
	y.WriteString(s.Extra)
	write("campaign.yaml", []byte(y.String()))
	return filepath.Join(dir, "campaign.yaml")
}

// launch runs `repermit launch --json` and returns its report.
func (w *world) launch(path string) repermit.ImportResult {
	w.t.Helper()
	var r repermit.ImportResult
	out := w.run("launch", path, "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		w.t.Fatalf("launch --json printed %q: %v", out, err)
	}
	return r
}

type status struct {
	Campaign string                   `json:"campaign"`
	State    repermit.CampaignStatus  `json:"state"`
	Counts   map[repermit.State]int64 `json:"counts"`
}

func (s status) total() int64 {
	var n int64
	for _, v := range s.Counts {
		n += v
	}
	return n
}

func (s status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", s.State)
	for _, st := range repermit.States() {
		fmt.Fprintf(&b, " %s=%d", st, s.Counts[st])
	}
	return b.String()
}

// status runs `repermit status ID --json`.
func (w *world) status(id string) status {
	w.t.Helper()
	var s status
	out := w.run("status", id, "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		w.t.Fatalf("status --json printed %q: %v", out, err)
	}
	return s
}

// waitStatus polls status until cond holds.
func (w *world) waitStatus(id string, timeout time.Duration, what string, cond func(status) bool) status {
	w.t.Helper()
	var last status
	deadline := time.Now().Add(timeout)
	for {
		last = w.status(id)
		if cond(last) {
			return last
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out after %s waiting until %s; last status %s", timeout, what, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// counter counts accepted mails per recipient; safe for concurrent use.
type counter struct {
	mu  sync.Mutex
	per map[string]int
}

func newCounter() *counter { return &counter{per: make(map[string]int)} }

func (c *counter) add(to []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range to {
		c.per[strings.ToLower(a)]++
	}
}

// figures returns how many distinct addresses got mail, the mails in all
// and the mails beyond the first per address.
func (c *counter) figures() (distinct, total, duplicates int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.per {
		distinct++
		total += n
		duplicates += n - 1
	}
	return
}

func (c *counter) get(a string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.per[strings.ToLower(a)]
}
