package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mailpit is a Mailpit server of the test's own, on free ports.
type mailpit struct {
	t      *testing.T
	SMTP   string // host:port
	API    string // http://host:port
	client *http.Client
}

// startMailpit starts Mailpit with unlimited storage (it keeps only 500
// messages by default) and chaos enabled, and waits until its API answers.
func startMailpit(t *testing.T) *mailpit {
	t.Helper()
	bin := os.Getenv(EnvMailpit)
	dir := t.TempDir()
	m := &mailpit{
		t:      t,
		SMTP:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		API:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	logPath := filepath.Join(dir, "mailpit.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--smtp", m.SMTP,
		"--listen", strings.TrimPrefix(m.API, "http://"),
		"--database", filepath.Join(dir, "mailpit.db"),
		"--max", "0",
		"--enable-chaos",
		"--disable-version-check",
		"--smtp-disable-rdns",
		"--quiet",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start mailpit %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- end of mailpit log:\n%s", tail(logPath, 20))
		}
	})
	waitUntil(t, 20*time.Second, "mailpit answers /api/v1/info", func() bool {
		select {
		case <-done:
			t.Fatalf("mailpit exited:\n%s", tail(logPath, 20))
		default:
		}
		resp, err := m.client.Get(m.API + "/api/v1/info")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return m
}

// SMTPURL is the REPERMIT_SMTP_URL of this Mailpit.
func (m *mailpit) SMTPURL() string { return "smtp://" + m.SMTP + "?tls=none" }

func (m *mailpit) getJSON(path string, v any) {
	m.t.Helper()
	resp, err := m.client.Get(m.API + path)
	if err != nil {
		m.t.Fatalf("mailpit GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		m.t.Fatalf("mailpit GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		m.t.Fatalf("mailpit GET %s: decode: %v", path, err)
	}
}

type mpAddress struct {
	Name    string
	Address string
}

// mpSummary is one entry of GET /api/v1/messages.
type mpSummary struct {
	ID        string
	MessageID string
	To        []mpAddress
	Subject   string
}

// mpMessage is GET /api/v1/message/{ID}.
type mpMessage struct {
	ID              string
	MessageID       string
	To              []mpAddress
	Subject         string
	Text            string
	HTML            string
	ListUnsubscribe struct {
		Header     string
		Links      []string
		Errors     string
		HeaderPost string
	}
}

// Count returns the number of messages Mailpit holds.
func (m *mailpit) Count() int {
	m.t.Helper()
	var r struct {
		Total int `json:"total"`
	}
	m.getJSON("/api/v1/messages?limit=1", &r)
	return r.Total
}

// Messages lists every message, newest first, a page at a time.
func (m *mailpit) Messages() []mpSummary {
	m.t.Helper()
	var all []mpSummary
	for start := 0; ; {
		var r struct {
			Total    int         `json:"total"`
			Messages []mpSummary `json:"messages"`
		}
		m.getJSON(fmt.Sprintf("/api/v1/messages?start=%d&limit=500", start), &r)
		all = append(all, r.Messages...)
		start += len(r.Messages)
		if len(r.Messages) == 0 || start >= r.Total {
			return all
		}
	}
}

// Message returns one message as Mailpit parsed it.
func (m *mailpit) Message(id string) mpMessage {
	m.t.Helper()
	var r mpMessage
	m.getJSON("/api/v1/message/"+id, &r)
	return r
}

// Headers returns one message's headers as Mailpit read them.
func (m *mailpit) Headers(id string) map[string][]string {
	m.t.Helper()
	var r map[string][]string
	m.getJSON("/api/v1/message/"+id+"/headers", &r)
	return r
}

// Raw returns the message as received over SMTP.
func (m *mailpit) Raw(id string) []byte {
	m.t.Helper()
	resp, err := m.client.Get(m.API + "/api/v1/message/" + id + "/raw")
	if err != nil {
		m.t.Fatalf("mailpit raw %s: %v", id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		m.t.Fatalf("mailpit raw %s: %s %v", id, resp.Status, err)
	}
	return b
}

// WaitCount waits until Mailpit holds at least n messages.
func (m *mailpit) WaitCount(n int, timeout time.Duration) {
	m.t.Helper()
	waitUntil(m.t, timeout, fmt.Sprintf("mailpit holds %d messages", n), func() bool { return m.Count() >= n })
}

// SetChaos makes Mailpit refuse that percentage of RCPT TO commands with
// code (4xx or 5xx); 0 turns it off.
func (m *mailpit) SetChaos(ctx context.Context, code, percent int) {
	m.t.Helper()
	body, _ := json.Marshal(map[string]any{"Recipient": map[string]int{"ErrorCode": code, "Probability": percent}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, m.API+"/api/v1/chaos", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		m.t.Fatalf("mailpit chaos: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		m.t.Fatalf("mailpit chaos: %s: %s", resp.Status, b)
	}
}
