package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/repermit/repermit/redistest"
)

// mkfifo makes a named pipe at path. Opening it for reading blocks until a
// writer comes; the cleanup opens and closes a writer, so a test that hung
// on it does not hang the test binary.
func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	t.Cleanup(func() {
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
}

// testPubkey is a well-formed public key, of no log.
const testPubkey = "acme-consent+9643f182+AehCUS4frO55OcoIfsWHMH3WyvFrSEm+6tHdsLpE01YK"

// TestCommandsRefuseFilesThatAreNotRegular gives validate, launch,
// verify-ledger and verify-proof a FIFO where a file belongs (a mail or
// page template of the campaign's templates directory too): each must
// refuse at once with exit 2 and name the file, not wait for a writer that
// never comes.
func TestCommandsRefuseFilesThatAreNotRegular(t *testing.T) {
	for _, tc := range []struct {
		name, fifo string
		args       func(dir string) []string
	}{
		{"validate campaign", "campaign.yaml", func(dir string) []string { return []string{"validate", filepath.Join(dir, "campaign.yaml")} }},
		{"validate recipients", "recipients.csv", func(dir string) []string { return []string{"validate", filepath.Join(dir, "campaign.yaml")} }},
		{"validate suppression", "suppression.csv", func(dir string) []string { return []string{"validate", filepath.Join(dir, "campaign.yaml")} }},
		{"launch recipients", "recipients.csv", func(dir string) []string { return []string{"launch", filepath.Join(dir, "campaign.yaml")} }},
		{"validate mail template", filepath.Join("templates", "initial.txt"), func(dir string) []string {
			return []string{"validate", filepath.Join(dir, "campaign.yaml")}
		}},
		{"validate page template", filepath.Join("templates", "pages", "landing.html"), func(dir string) []string {
			return []string{"validate", filepath.Join(dir, "campaign.yaml")}
		}},
		{"verify-ledger", "ledger.jsonl", func(dir string) []string {
			return []string{"verify-ledger", filepath.Join(dir, "ledger.jsonl"), "--pubkey", testPubkey}
		}},
		{"verify-proof", "proof.json", func(dir string) []string {
			return []string{"verify-proof", filepath.Join(dir, "proof.json"), "--pubkey", testPubkey}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{
				"campaign.yaml":   fmt.Sprintf(campaignYAML, "fifo") + "suppression: suppression.csv\ntemplates: templates\n",
				"recipients.csv":  "email\na@example.com\n",
				"suppression.csv": "email\nb@example.com\n",
			}
			delete(files, tc.fifo)
			dir := writeFiles(t, files)
			if err := os.MkdirAll(filepath.Join(dir, "templates", "pages"), 0o755); err != nil {
				t.Fatal(err)
			}
			mkfifo(t, filepath.Join(dir, tc.fifo))
			c := newCLI(t, redistest.New(t))
			type result struct {
				code        int
				out, errOut string
			}
			done := make(chan result, 1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				code, out, errOut := c.runContext(ctx, tc.args(dir)...)
				done <- result{code, out, errOut}
			}()
			select {
			case r := <-done:
				if r.code != 2 || !strings.Contains(r.errOut, tc.fifo) || !strings.Contains(r.errOut, "not a regular file") {
					t.Errorf("exit %d, stderr %q; want 2 naming %s as not a regular file", r.code, r.errOut, tc.fifo)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%v still waits on the FIFO after 5 s", tc.args(dir))
			}
		})
	}
}

// TestServersRefuseKeyFilesThatAreNotRegular gives web a FIFO as its TLS
// certificate or key and worker one as its DKIM key: each must stop at
// once with exit 2 naming the file, not hang at the start in open(2),
// where a cancelled context (Ctrl-C) does not reach it.
func TestServersRefuseKeyFilesThatAreNotRegular(t *testing.T) {
	r := redistest.New(t)
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	cert, key, fifo := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "fifo.pem")
	if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	mkfifo(t, fifo)
	for _, tc := range []struct {
		name, cmd string
		env       map[string]string
	}{
		{"TLS certificate", "web", map[string]string{"REPERMIT_TLS_CERT": fifo, "REPERMIT_TLS_KEY": key}},
		{"TLS key", "web", map[string]string{"REPERMIT_TLS_CERT": cert, "REPERMIT_TLS_KEY": fifo}},
		{"DKIM key", "worker", map[string]string{"REPERMIT_SMTP_URL": "smtp://127.0.0.1:1?tls=none&dkim_domain=acme.example&dkim_selector=s&dkim_key=" + fifo}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t, r)
			c.env["REPERMIT_HTTP_ADDR"] = freeTCPAddr(t)
			c.env["REPERMIT_ADMIN_ADDR"] = freeTCPAddr(t)
			for k, v := range tc.env {
				c.env[k] = v
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				code   int
				errOut string
			}
			done := make(chan result, 1)
			go func() {
				code, _, errOut := c.runContext(ctx, tc.cmd)
				done <- result{code, errOut}
			}()
			select {
			case res := <-done:
				if res.code != 2 || !strings.Contains(res.errOut, fifo) || !strings.Contains(res.errOut, "not a regular file") {
					t.Errorf("exit %d, stderr %q; want 2 naming %s as not a regular file", res.code, res.errOut, fifo)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s still waits on the FIFO after 5 s", tc.cmd)
			}
		})
	}
}
