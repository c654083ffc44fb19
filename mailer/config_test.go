package mailer

import (
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
)

func TestParseSMTPURL(t *testing.T) {
	tests := []struct {
		raw  string
		want Config
	}{
		{"smtp://localhost:1025?tls=none", Config{Host: "localhost", Port: 1025, TLS: TLSNone}},
		{"smtp://mail.example.com", Config{Host: "mail.example.com"}},
		{"smtp://u%40x:p%3Ass@mail.example.com:2525?tls=starttls&auth=login&helo=me.example&timeout=30s&idle_timeout=-1s",
			Config{Host: "mail.example.com", Port: 2525, TLS: TLSStartTLS, Username: "u@x", Password: "p:ss",
				Auth: "login", HELO: "me.example", Timeout: 30 * time.Second, IdleTimeout: -time.Second}},
		{"smtp://[::1]:25?tls=TLS", Config{Host: "::1", Port: 25, TLS: TLSImplicit}},
		{"smtp://h?bounce_domain=Bounce.ACME.example", Config{Host: "h", BounceDomain: "bounce.acme.example"}},
	}
	for _, tt := range tests {
		got, err := ParseSMTPURL(tt.raw)
		if err != nil {
			t.Errorf("ParseSMTPURL(%q): %v", tt.raw, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSMTPURL(%q) =\n%+v, want\n%+v", tt.raw, got, tt.want)
		}
	}
}

func TestParseSMTPURLErrors(t *testing.T) {
	tests := []struct {
		raw  string
		want string
	}{
		{"http://mail.example.com", "scheme"},
		{"smtp://:25", "missing host"},
		{"smtp://h?tls=ssl", "tls="},
		{"smtp://h:99999", "port"},
		{"smtp://h:x", "cannot parse"},
		{"smtp://h?timeout=soon", "timeout"},
		{"smtp://h?auth=magic", "auth"},
		{"smtp://h?dkim_key=/nonexistent/key.pem&dkim_domain=d&dkim_selector=s", "dkim_key"},
		{"smtp://h?dkim_key=testdata/override/initial.en.txt", "dkim_key"},
		{"smtp://user:s3cret@h:x", "cannot parse"},
		{"smtp://h?bounce_domain=localhost", "bounce_domain"},
		{"smtp://h?bounce_domain=bounces%40acme.example", "bounce_domain"},
		{"smtp://h?bounce_domain=-x.example", "bounce_domain"},
		{"smtp://h?bounce_domain=a..example", "bounce_domain"},
	}
	for _, tt := range tests {
		_, err := ParseSMTPURL(tt.raw)
		if err == nil {
			t.Errorf("ParseSMTPURL(%q) succeeded", tt.raw)
			continue
		}
		if repermit.ErrorCode(err) != repermit.EINVALID || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSMTPURL(%q) = %v, want EINVALID mentioning %q", tt.raw, err, tt.want)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
}

func TestConfigDefaultsAndString(t *testing.T) {
	tests := []struct {
		cfg      Config
		wantAddr string
		wantStr  string
	}{
		{Config{Host: "h", TLS: TLSNone}, "h:25", "smtp://h:25?tls=none"},
		{Config{Host: "h"}, "h:587", "smtp://h:587?tls=starttls"},
		{Config{Host: "h", TLS: TLSImplicit, Username: "u", Password: "secret"}, "h:465", "smtp://u@h:465?tls=tls"},
	}
	for _, tt := range tests {
		if got := tt.cfg.Addr(); got != tt.wantAddr {
			t.Errorf("Addr() = %q, want %q", got, tt.wantAddr)
		}
		if got := tt.cfg.String(); got != tt.wantStr {
			t.Errorf("String() = %q, want %q", got, tt.wantStr)
		}
	}
}
