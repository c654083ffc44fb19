// Package dkimtest checks DKIM signatures the way a receiving mail server
// does, with a verifier that shares no code with the signer: python3-dkim
// (Debian's python3-dkim, run by /usr/bin/python3), its DNS lookup
// answered with the test's own public key. go-msgauth's verifier alone
// would agree with go-msgauth's signer on any bug they share.
package dkimtest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Python is the interpreter that has Debian's python3-dkim; python3 on PATH
// may be a build of its own without Debian's modules.
const Python = "/usr/bin/python3"

// Key is a DKIM key pair written to a PEM file.
type Key struct {
	Algorithm string // "rsa" or "ed25519"
	Signer    crypto.Signer
	// File is the PEM (PKCS #8) private key, for dkim_key in the SMTP URL.
	File string
}

// NewKey returns a fresh RSA-2048 or Ed25519 key, written under t.TempDir.
func NewKey(t testing.TB, algorithm string) Key {
	t.Helper()
	var signer crypto.Signer
	var err error
	switch algorithm {
	case "rsa":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("dkimtest: unknown algorithm %q", algorithm)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dkim-"+algorithm+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return Key{Algorithm: algorithm, Signer: signer, File: file}
}

// TXT returns the DNS TXT record that publishes the public key (RFC 6376
// section 3.6.1; Ed25519 as in RFC 8463: the raw 32 bytes).
func (k Key) TXT(t testing.TB) string {
	t.Helper()
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
	t.Fatalf("dkimtest: key of type %T", k.Signer.Public())
	return ""
}

// verifyScript verifies each message file named after the record, one
// report line per file; any lookup name other than the expected one gets
// no record, so a signature with the wrong d= or s= fails. One process
// for many messages: python3-dkim takes a second or more to start.
const verifyScript = `
import sys, dkim
name, record = sys.argv[1].encode(), sys.argv[2].encode()
def dns(qname, timeout=5):
    return record if qname.rstrip(b".") == name else None
for path in sys.argv[3:]:
    with open(path, "rb") as f:
        msg = f.read()
    try:
        d = dkim.DKIM(msg)
        ok = d.verify(dnsfunc=dns)
    except Exception as e:
        ok, d = False, None
        sys.stdout.write("FAIL " + repr(e) + "\n")
        continue
    if not ok:
        sys.stdout.write("FAIL\n")
        continue
    sys.stdout.write("PASS " + d.signature_fields.get(b"a", b"").decode() + " h=" + d.signature_fields.get(b"h", b"").decode() + "\n")
`

// Available reports why python3-dkim cannot run here, or "" if it can.
func Available() string {
	out, err := exec.Command(Python, "-c", "import dkim, nacl").CombinedOutput()
	if err != nil {
		return Python + ` cannot import dkim and nacl (apt-get install python3-dkim python3-nacl): ` + strings.TrimSpace(string(out))
	}
	return ""
}

// Need skips t, loudly, when python3-dkim is missing; CI installs it, so
// the skip happens only on a developer's machine.
func Need(t testing.TB) {
	t.Helper()
	if why := Available(); why != "" {
		t.Skip("SKIPPING DKIM VERIFICATION: " + why)
	}
}

// Verify runs python3-dkim on the raw message as received and returns its
// report ("PASS ed25519-sha256 h=…") and whether the signature verified,
// with the key of selector._domainkey.domain answered by k.
func Verify(t testing.TB, raw []byte, domain, selector string, k Key) (string, bool) {
	t.Helper()
	r := VerifyAll(t, [][]byte{raw}, domain, selector, k)
	return r[0].Report, r[0].OK
}

// Result is python3-dkim's verdict on one message.
type Result struct {
	Report string // "PASS rsa-sha256 h=from:to:…" or "FAIL …"
	OK     bool
}

// VerifyAll is Verify for many messages in one python3-dkim process.
func VerifyAll(t testing.TB, raws [][]byte, domain, selector string, k Key) []Result {
	t.Helper()
	dir := t.TempDir()
	args := []string{"-c", verifyScript, selector + "._domainkey." + domain, k.TXT(t)}
	for i, raw := range raws {
		p := filepath.Join(dir, strconv.Itoa(i)+".eml")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	cmd := exec.Command(Python, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimtest: run %s: %v\n%s", Python, err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(raws) {
		t.Fatalf("dkimtest: %d reports for %d messages:\n%s\n%s", len(lines), len(raws), out, stderr.String())
	}
	res := make([]Result, len(raws))
	for i, l := range lines {
		res[i] = Result{Report: l, OK: strings.HasPrefix(l, "PASS ")}
	}
	return res
}
