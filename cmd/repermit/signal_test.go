package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/smtpsink"
)

// runMainEnv makes the test binary run main instead of the tests, so that
// a test can signal a real repermit process.
const runMainEnv = "REPERMIT_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// TestEveryLongCommandStopsOnSIGINTAndSIGTERM starts the commands that run
// until told to stop (or that could wait on their input) as processes,
// signals each, and wants it gone within seconds.
func TestEveryLongCommandStopsOnSIGINTAndSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	r := redistest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink, err := smtpsink.Start(ctx, smtpsink.Options{Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	c := newCLI(t, r)
	dir := writeFiles(t, map[string]string{"campaign.yaml": fmt.Sprintf(campaignYAML, "signals"), "recipients.csv": "email\na@example.com\n"})
	if code, _, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 {
		t.Fatalf("launch: exit %d: %s", code, errOut)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	mkfifo(t, fifo)

	freeAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, args := range [][]string{
			{"validate", fifo},
			{"status", "signals", "--watch", "1s"},
			{"worker"},
			{"web", "--addr", freeAddr()},
			{"serve", "--addr", freeAddr()},
		} {
			t.Run(sig.String()+" "+strings.Join(args[:1], " "), func(t *testing.T) {
				cmd := exec.Command(os.Args[0], args...)
				cmd.Env = append(os.Environ(), runMainEnv+"=1",
					"REPERMIT_REDIS_URL="+r.URL, "REPERMIT_PREFIX="+r.Prefix,
					"REPERMIT_SECRET="+strings.Repeat("s", 32), "REPERMIT_SMTP_URL="+sink.URL(), "REPERMIT_ADMIN_ADDR=127.0.0.1:0")
				var out strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				time.Sleep(500 * time.Millisecond)
				cmd.Process.Signal(sig)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					<-done
					t.Errorf("%v still runs 10 s after %v; output:\n%s", args, sig, out.String())
				}
			})
		}
	}
}
