package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// ledgerKeys runs ledger-key and returns its two values.
func ledgerKeys(t *testing.T, c *cli) (skey, vkey string) {
	t.Helper()
	code, out, errOut := c.run("ledger-key", "acme-consent")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "REPERMIT_LEDGER_KEY=PRIVATE+KEY+acme-consent+") || !strings.HasPrefix(lines[1], "REPERMIT_LEDGER_PUBKEY=acme-consent+") {
		t.Fatalf("ledger-key: %d %q %q", code, out, errOut)
	}
	return strings.TrimPrefix(lines[0], "REPERMIT_LEDGER_KEY="), strings.TrimPrefix(lines[1], "REPERMIT_LEDGER_PUBKEY=")
}

func TestLedgerCommands(t *testing.T) {
	r := redistest.New(t)
	c := newCLI(t, r)
	skey, vkey := ledgerKeys(t, c)
	c.env["REPERMIT_LEDGER_KEY"] = skey
	ctx := context.Background()
	s := redisstore.New(r.Client, r.Prefix)
	t0 := time.Now().UTC()
	camp := repermit.Campaign{ID: "cli", From: "a@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour)}
	imp, err := s.BeginImport(ctx, camp, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		imp.Add(ctx, fmt.Sprintf("p%d@example.com", i), "", "en", nil)
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Imported: 3}); err != nil {
		t.Fatal(err)
	}
	for i, st := range []repermit.State{repermit.StateConfirmed, repermit.StateDeclined, repermit.StateConfirmed} {
		if _, err := s.Record(ctx, redisstore.Answer{Campaign: "cli", Index: int64(i), State: st, At: t0, IP: "192.0.2.1", UserAgent: "ua"}); err != nil {
			t.Fatal(err)
		}
	}
	// The worker keeps this before it sends the initial mail in en.
	mailText := "repermit mail wording\ncampaign: cli\nmail: initial\nlocale: en\nsubject: s\n\nStill want our mail? {yes link}\n"
	mailSum := sha256.Sum256([]byte(mailText))
	if err := s.KeepMailWording(ctx, "cli", redisstore.MailWording{Locale: "en", SHA256: hex.EncodeToString(mailSum[:])}, []byte(mailText)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	code, out, errOut := c.run("export", "cli", "--what", "ledger")
	if code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	ledger := filepath.Join(dir, "ledger.jsonl")
	os.WriteFile(ledger, []byte(out), 0o644)

	for _, tc := range []struct {
		name     string
		args     []string
		body     string // replaces the ledger's content when set
		code     int
		out, err string
	}{
		{"intact", []string{"verify-ledger", ledger, "--pubkey", vkey}, "", 0, "consent log of cli intact: 3 records, 1 signed checkpoints", ""},
		{"no key", []string{"verify-ledger", ledger}, "", 2, "", "--pubkey KEY is required"},
		{"bad key", []string{"verify-ledger", ledger, "--pubkey", "nonsense"}, "", 2, "", "--pubkey"},
		{"edited", []string{"verify-ledger", ledger, "--pubkey", vkey}, strings.Replace(out, `"answer":"declined"`, `"answer":"confirmed"`, 1), 1, "", "ledger.jsonl:5: the records on lines 2-4 do not hash"},
		{"header moved", []string{"verify-ledger", ledger, "--pubkey", vkey}, func() string {
			l := strings.SplitAfter(out, "\n")
			l[0], l[1] = l[1], l[0]
			return strings.Join(l, "")
		}(), 1, "", "ledger.jsonl:1: not the header of a consent log"},
		{"old kind", []string{"verify-ledger", ledger, "--pubkey", vkey}, `{"seq":1,"campaign":"old","recipient":0,"answer":"confirmed","at":"2026-12-01T09:00:00Z","prev":"","hash":"x"}` + "\n", 1, "", "ledger.jsonl:1: hash mismatch (edited record) (a ledger of the old kind"},
		{"missing file", []string{"verify-ledger", filepath.Join(dir, "nope"), "--pubkey", vkey}, "", 2, "", "nope"},
	} {
		if tc.body != "" {
			os.WriteFile(ledger, []byte(tc.body), 0o644)
		}
		code, o, e := c.run(tc.args...)
		if code != tc.code || !strings.Contains(o, tc.out) || !strings.Contains(e, tc.err) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.name, code, o, e, tc.code, tc.out, tc.err)
		}
		os.WriteFile(ledger, []byte(out), 0o644)
	}

	bundle := filepath.Join(dir, "proof.json")
	code, out, errOut = c.run("proof", "P0@example.com", "--bundle", bundle)
	if code != 0 || !strings.Contains(out, "p0@example.com: 1 consent records in 1 campaigns") || !strings.Contains(out, "cli  record 1  confirmed") || !strings.Contains(out, `IP 192.0.2.1, user agent "ua"`) {
		t.Fatalf("proof: %d %q %q", code, out, errOut)
	}
	if !strings.Contains(out, "cli  mail initial (en) sha256 "+hex.EncodeToString(mailSum[:])) {
		t.Errorf("proof does not name the mail wording: %q", out)
	}
	code, out, errOut = c.run("verify-proof", bundle, "--pubkey", vkey)
	if code != 0 || !strings.Contains(out, "proof intact") || !strings.Contains(out, "cli  mail initial (en)") {
		t.Errorf("verify-proof: %d %q %q", code, out, errOut)
	}
	data, _ := os.ReadFile(bundle)
	// One byte of the mail wording changed.
	at := bytes.Index(data, []byte("Still want"))
	if at < 0 {
		t.Fatalf("bundle lacks the mail wording:\n%s", data)
	}
	bad := bytes.Clone(data)
	bad[at] = 's'
	os.WriteFile(bundle, bad, 0o644)
	if code, _, errOut = c.run("verify-proof", bundle, "--pubkey", vkey); code != 1 || !strings.Contains(errOut, "proof.json: campaign cli, mail wording 1: text does not hash") {
		t.Errorf("verify-proof of a changed mail wording: %d %q", code, errOut)
	}
	data[len(data)/2] ^= 1
	os.WriteFile(bundle, data, 0o644)
	if code, _, errOut = c.run("verify-proof", bundle, "--pubkey", vkey); code != 1 || !strings.Contains(errOut, "proof.json") {
		t.Errorf("verify-proof of a changed bundle: %d %q", code, errOut)
	}

	c.env["REPERMIT_LEDGER_KEY"] = c.env["REPERMIT_SECRET"]
	if code, _, errOut = c.run("export", "cli", "--what", "ledger"); code != 2 || !strings.Contains(errOut, "must not be the link secret") {
		t.Errorf("ledger key = link secret: %d %q", code, errOut)
	}
}
