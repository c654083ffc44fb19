package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/token"
)

// startWeb runs `repermit web` with c's environment until the test ends
// and waits for its /healthz at base.
func startWeb(t *testing.T, c *cli, base string, client *http.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if code, _, errOut := c.runContext(ctx, "web"); code != 0 {
			t.Errorf("web: exit %d: %s", code, errOut)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, 5*time.Second, "the web server", func() bool {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestBehindAProxyRecipientsAreToldApart runs `web` with
// REPERMIT_TRUSTED_PROXIES naming the loopback, where the test's requests
// come from as from a reverse proxy: each recipient gets their own POST
// bucket, and the consent record keeps their address, not the proxy's.
func TestBehindAProxyRecipientsAreToldApart(t *testing.T) {
	r := redistest.New(t)
	c := newCLI(t, r)
	var rows strings.Builder
	rows.WriteString("email\n")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&rows, "p%d@example.com\n", i)
	}
	dir := writeFiles(t, map[string]string{"campaign.yaml": fmt.Sprintf(campaignYAML, "proxied"), "recipients.csv": rows.String()})
	if code, _, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 {
		t.Fatalf("launch: exit %d: %s", code, errOut)
	}
	st := redisstore.New(r.Client, r.Prefix)
	camp, err := st.Campaign(context.Background(), "proxied")
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.Deployment(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewBoundSigner([][]byte{[]byte(c.env["REPERMIT_SECRET"])}, token.Deployment(r.Prefix, id))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeTCPAddr(t)
	c.env["REPERMIT_HTTP_ADDR"] = addr
	c.env["REPERMIT_TRUSTED_PROXIES"] = "127.0.0.0/8, ::1"
	startWeb(t, c, "http://"+addr, http.DefaultClient)

	post := func(client string, idx uint32) int {
		tok := signer.Sign(token.Claims{Purpose: token.Confirm, Campaign: camp.ID, CampaignSeq: camp.Seq, Recipient: idx, Deadline: camp.Deadline})
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/c/"+tok, strings.NewReader(url.Values{"choice": {"decline"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The default bucket holds 20 POSTs per client.
	for i := uint32(0); i < 25; i++ {
		post("198.51.100.1", i)
	}
	if code := post("198.51.100.2", 29); code != http.StatusOK {
		t.Errorf("another recipient behind the same proxy: %d, want 200", code)
	}
	var ips []string
	if err := st.Ledger(context.Background(), "proxied", func(rec repermit.ConsentRecord, _ string) error {
		ips = append(ips, rec.IP)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, ip := range ips {
		if !strings.HasPrefix(ip, "198.51.100.") {
			t.Errorf("a consent record keeps %q, not the recipient's network", ip)
		}
	}
	if len(ips) != 21 {
		t.Errorf("%d consent records, want 20 of the first recipient's bucket and 1 of the second", len(ips))
	}
}

func TestBadProxyOrTLSSettingsExit2(t *testing.T) {
	r := redistest.New(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad CIDR", map[string]string{"REPERMIT_TRUSTED_PROXIES": "10.0.0.0/33"}, "REPERMIT_TRUSTED_PROXIES"},
		{"not an address", map[string]string{"REPERMIT_TRUSTED_PROXIES": "proxy.example"}, "REPERMIT_TRUSTED_PROXIES"},
		{"cert without key", map[string]string{"REPERMIT_TLS_CERT": filepath.Join(dir, "c.pem")}, "REPERMIT_TLS_KEY"},
		{"missing files", map[string]string{"REPERMIT_TLS_CERT": filepath.Join(dir, "c.pem"), "REPERMIT_TLS_KEY": filepath.Join(dir, "k.pem")}, "REPERMIT_TLS_CERT"},
	} {
		c := newCLI(t, r)
		for k, v := range tc.env {
			c.env[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		code, _, errOut := c.runContext(ctx, "web")
		cancel()
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, %q; want 2 naming %s", tc.name, code, errOut, tc.want)
		}
	}
}

// TestWebServesHTTPSFromCertificateFiles: with REPERMIT_TLS_CERT and
// REPERMIT_TLS_KEY the recipients' listener speaks TLS with that
// certificate.
func TestWebServesHTTPSFromCertificateFiles(t *testing.T) {
	r := redistest.New(t)
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 2 * time.Second}

	c := newCLI(t, r)
	addr := freeTCPAddr(t)
	c.env["REPERMIT_HTTP_ADDR"] = addr
	c.env["REPERMIT_TLS_CERT"] = filepath.Join(dir, "cert.pem")
	c.env["REPERMIT_TLS_KEY"] = filepath.Join(dir, "key.pem")
	startWeb(t, c, "https://"+addr, client)
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil || resp.StatusCode != http.StatusOK {
		t.Errorf("healthz over TLS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP still answers 200 on the TLS listener")
		}
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
