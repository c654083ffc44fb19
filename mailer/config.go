// Package mailer builds the campaign mails and sends them over SMTP with
// go-mail: templates per kind and locale, a pool of long-lived connections and
// the classes of SMTP errors that decide between retry, bounce and pause.
package mailer

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/wneessen/go-mail"
)

// TLSMode is how a connection to the SMTP server is protected.
type TLSMode string

const (
	TLSNone     TLSMode = "none"     // plain text; for local relays and test servers
	TLSStartTLS TLSMode = "starttls" // STARTTLS is required, the connection fails without it
	TLSImplicit TLSMode = "tls"      // TLS from the first byte (SMTPS, usually port 465)
)

// DefaultTimeout bounds a dial and, on a connection, one whole transaction
// from MAIL FROM to the end of DATA.
const DefaultTimeout = 15 * time.Second

// DefaultIdleTimeout is how long a pooled connection may sit unused before the
// pool replaces it instead of risking a server that has hung up meanwhile.
const DefaultIdleTimeout = 30 * time.Second

// Config is how to reach the SMTP server. Zero values of the optional fields
// mean the documented defaults.
type Config struct {
	Host string
	// Port defaults to 587 for starttls, 465 for tls and 25 for none.
	Port int
	TLS  TLSMode

	// Username and Password enable SMTP AUTH when Username is set.
	Username string
	Password string
	// Auth is the SASL mechanism, e.g. "PLAIN" (the default), "LOGIN",
	// "CRAM-MD5", "SCRAM-SHA-256" or "AUTO" (strongest offered). go-mail
	// refuses PLAIN and LOGIN on an unencrypted connection except to
	// localhost, which keeps a password off the wire with tls=none.
	Auth string

	// HELO is the name sent in EHLO; default the local host name.
	HELO string
	// Timeout defaults to DefaultTimeout.
	Timeout time.Duration
	// IdleTimeout defaults to DefaultIdleTimeout; negative keeps idle
	// connections forever.
	IdleTimeout time.Duration

	// DKIM signs every mail when DKIMKey is set (RSA of at least 1024 bits,
	// 2048 recommended, or Ed25519 after RFC 8463); DKIMDomain and
	// DKIMSelector are then required. The signature is relaxed/relaxed and
	// covers DKIMHeaders.
	DKIMDomain   string
	DKIMSelector string
	DKIMKey      crypto.Signer

	// BounceDomain, when set, gives every mail its own Return-Path (VERP):
	// bounces+TOKEN@BounceDomain, TOKEN a signed token naming campaign and
	// recipient (token.Signer.BounceAddress). Mail to that domain must
	// reach the bounce mailbox (REPERMIT_BOUNCE_IMAP_URL). Unset, the
	// envelope sender is the From address.
	BounceDomain string
}

// Addr returns host:port.
func (c Config) Addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.port()))
}

// String returns the configuration as a URL without the password, for logs.
func (c Config) String() string {
	u := url.URL{Scheme: "smtp", Host: c.Addr(), RawQuery: "tls=" + string(c.tlsMode())}
	if c.Username != "" {
		u.User = url.User(c.Username)
	}
	return u.String()
}

func (c Config) tlsMode() TLSMode {
	if c.TLS == "" {
		return TLSStartTLS
	}
	return c.TLS
}

func (c Config) port() int {
	if c.Port != 0 {
		return c.Port
	}
	switch c.tlsMode() {
	case TLSNone:
		return 25
	case TLSImplicit:
		return 465
	}
	return 587
}

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c Config) idleTimeout() time.Duration {
	if c.IdleTimeout == 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}

// authType maps the names accepted in Config.Auth to go-mail's; "" is PLAIN.
func authType(name string) (mail.SMTPAuthType, bool) {
	switch strings.ToUpper(name) {
	case "", "PLAIN":
		return mail.SMTPAuthPlain, true
	case "LOGIN":
		return mail.SMTPAuthLogin, true
	case "CRAM-MD5":
		return mail.SMTPAuthCramMD5, true
	case "SCRAM-SHA-1":
		return mail.SMTPAuthSCRAMSHA1, true
	case "SCRAM-SHA-256":
		return mail.SMTPAuthSCRAMSHA256, true
	case "XOAUTH2":
		return mail.SMTPAuthXOAUTH2, true
	case "AUTO":
		return mail.SMTPAuthAutoDiscover, true
	}
	return "", false
}

// Validate reports the first problem that would keep a Pool from dialling.
func (c Config) Validate() error {
	if c.Host == "" {
		return repermit.Errorf(repermit.EINVALID, "SMTP URL: missing host")
	}
	switch c.tlsMode() {
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return repermit.Errorf(repermit.EINVALID, "SMTP URL: tls=%q, want none, starttls or tls", c.TLS)
	}
	if p := c.port(); p < 1 || p > 65535 {
		return repermit.Errorf(repermit.EINVALID, "SMTP URL: port %d out of range", p)
	}
	if _, ok := authType(c.Auth); !ok {
		return repermit.Errorf(repermit.EINVALID, "SMTP URL: unknown auth mechanism %q", c.Auth)
	}
	if c.DKIMKey != nil && (c.DKIMDomain == "" || c.DKIMSelector == "") {
		return repermit.Errorf(repermit.EINVALID, "SMTP URL: dkim_key needs dkim_domain and dkim_selector")
	}
	if d := c.BounceDomain; d != "" && !validDomain(d) {
		return repermit.Errorf(repermit.EINVALID, "SMTP URL: bounce_domain=%q is not a domain name", d)
	}
	if c.DKIMKey != nil {
		switch k := c.DKIMKey.Public().(type) {
		case ed25519.PublicKey:
		case *rsa.PublicKey:
			// RFC 8301: verifiers must not accept RSA keys under 1024 bits.
			if k.N.BitLen() < 1024 {
				return repermit.Errorf(repermit.EINVALID, "SMTP URL: dkim_key: RSA key of %d bits, want at least 1024 (2048 recommended)", k.N.BitLen())
			}
		default:
			return repermit.Errorf(repermit.EINVALID, "SMTP URL: dkim_key: %T, want an RSA or Ed25519 key", k)
		}
	}
	return nil
}

// ParseSMTPURL parses smtp://user:pass@host:port?tls=none|starttls|tls.
// Optional query parameters: auth (see Config.Auth), helo, timeout and
// idle_timeout (Go durations), bounce_domain (see Config.BounceDomain), and
// dkim_domain, dkim_selector, dkim_key (path
// to a PEM file with an RSA or Ed25519 private key, read here). Errors are
// EINVALID and never repeat the password.
func ParseSMTPURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the input, password included.
		return Config{}, repermit.Errorf(repermit.EINVALID, "SMTP URL: cannot parse; want smtp://user:pass@host:port?tls=none|starttls|tls")
	}
	if u.Scheme != "smtp" {
		return Config{}, repermit.Errorf(repermit.EINVALID, "SMTP URL: scheme %q, want smtp", u.Scheme)
	}
	c := Config{Host: u.Hostname()}
	if p := u.Port(); p != "" {
		c.Port, err = strconv.Atoi(p)
		if err != nil {
			return Config{}, repermit.Errorf(repermit.EINVALID, "SMTP URL: bad port %q", p)
		}
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	q := u.Query()
	c.TLS = TLSMode(strings.ToLower(q.Get("tls")))
	c.Auth = q.Get("auth")
	c.HELO = q.Get("helo")
	for key, dst := range map[string]*time.Duration{"timeout": &c.Timeout, "idle_timeout": &c.IdleTimeout} {
		if v := q.Get(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return Config{}, repermit.Errorf(repermit.EINVALID, "SMTP URL: %s=%q is not a duration", key, v)
			}
			*dst = d
		}
	}
	c.BounceDomain = strings.ToLower(q.Get("bounce_domain"))
	c.DKIMDomain = q.Get("dkim_domain")
	c.DKIMSelector = q.Get("dkim_selector")
	if path := q.Get("dkim_key"); path != "" {
		// A regular file only: a FIFO would hang the start in open(2).
		pemBytes, err := repermit.ReadFile(path)
		if err != nil {
			return Config{}, repermit.Errorf(repermit.EINVALID, "SMTP URL: dkim_key: %v", err)
		}
		c.DKIMKey, err = mail.PrivKeyFromPEM(pemBytes)
		if err != nil {
			return Config{}, repermit.Errorf(repermit.EINVALID, "SMTP URL: dkim_key %s: %v", path, err)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// clientOptions turns the configuration into go-mail options; dial is the
// pool's dialer, which must do the TLS handshake itself for TLSImplicit
// because go-mail skips its own TLS dialer when given a dial function.
func (c Config) clientOptions(dial mail.DialContextFunc) []mail.Option {
	opts := []mail.Option{
		mail.WithPort(c.port()),
		mail.WithTimeout(c.timeout()),
		// The pool dials fresh connections and replaces idle ones, so a NOOP
		// before every mail would only cost a round trip.
		mail.WithoutNoop(),
		// No RSET after an accepted mail: the transaction ended with the
		// server's reply to the final dot (RFC 5321 4.1.1.4), and that
		// round trip sat between the server's acceptance and the worker's
		// record of the mail, the window in which a crash sends it twice.
		// After a refusal the pool still sends RSET (Pool.send).
		mail.WithoutRset(),
		mail.WithDialContextFunc(dial),
	}
	switch c.tlsMode() {
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case TLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	}
	if c.HELO != "" {
		opts = append(opts, mail.WithHELO(c.HELO))
	}
	if c.Username != "" {
		auth, _ := authType(c.Auth)
		opts = append(opts, mail.WithSMTPAuth(auth), mail.WithUsername(c.Username), mail.WithPassword(c.Password))
	}
	return opts
}

// validDomain reports whether d is a domain name of at least two labels of
// letters, digits and hyphens (an IDN in its xn-- form).
func validDomain(d string) bool {
	labels := strings.Split(d, ".")
	if len(d) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
