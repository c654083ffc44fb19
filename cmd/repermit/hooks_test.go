package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redistest"
)

// TestESPHookSettings reads each provider's REPERMIT_HOOK_* variable into
// the setting its endpoint checks requests with; only the providers
// configured are served (hooks.New routes by these fields).
func TestESPHookSettings(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sendgridKey := base64.StdEncoding.EncodeToString(der)
	tests := []struct {
		name     string
		env      map[string]string
		postmark string // user:password
		sendgrid bool
		mailgun  string
		ses      bool
		topics   []string
	}{
		{"postmark", map[string]string{"REPERMIT_HOOK_POSTMARK": "pm:0123456789abcdef"}, "pm:0123456789abcdef", false, "", false, nil},
		{"sendgrid", map[string]string{"REPERMIT_HOOK_SENDGRID_KEY": sendgridKey}, ":", true, "", false, nil},
		{"mailgun", map[string]string{"REPERMIT_HOOK_MAILGUN_KEY": "key-0123"}, ":", false, "key-0123", false, nil},
		{"ses, two topics", map[string]string{"REPERMIT_HOOK_SES_TOPICS": "arn:aws:sns:eu-central-1:1:a, arn:aws:sns:eu-central-1:1:b"}, ":", false, "", true,
			[]string{"arn:aws:sns:eu-central-1:1:a", "arn:aws:sns:eu-central-1:1:b"}},
		{"ses, any topic Amazon SNS signed", map[string]string{"REPERMIT_HOOK_SES_TOPICS": "*"}, ":", false, "", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := espHooks(Env{Getenv: func(k string) string { return tt.env[k] }})
			if err != nil || cfg == nil {
				t.Fatalf("espHooks: %+v, %v", cfg, err)
			}
			if got := cfg.PostmarkUser + ":" + cfg.PostmarkPassword; got != tt.postmark {
				t.Errorf("postmark %q, want %q", got, tt.postmark)
			}
			if (cfg.SendGridKey != nil) != tt.sendgrid || (tt.sendgrid && !cfg.SendGridKey.Equal(&key.PublicKey)) {
				t.Errorf("sendgrid key %v, want set: %v", cfg.SendGridKey, tt.sendgrid)
			}
			if string(cfg.MailgunKey) != tt.mailgun || cfg.SES != tt.ses || !slices.Equal(cfg.SNSTopics, tt.topics) {
				t.Errorf("mailgun %q, ses %v %q; want %q, %v %q", cfg.MailgunKey, cfg.SES, cfg.SNSTopics, tt.mailgun, tt.ses, tt.topics)
			}
		})
	}
	if cfg, err := espHooks(Env{Getenv: func(string) string { return "" }}); cfg != nil || err != nil {
		t.Errorf("no provider configured: %+v, %v; want none", cfg, err)
	}
}

// TestBadESPHookSettingsRefuseToStart: a webhook secret that cannot
// authenticate anything stops the web server at start, naming the
// variable and not its value.
func TestBadESPHookSettingsRefuseToStart(t *testing.T) {
	r := redistest.New(t)
	for _, tt := range []struct{ name, value string }{
		{"REPERMIT_HOOK_POSTMARK", "pm:short-secret"},
		{"REPERMIT_HOOK_POSTMARK", "no-colon-0123456789abcdef"},
		{"REPERMIT_HOOK_SENDGRID_KEY", "not-base64-secret!"},
		{"REPERMIT_HOOK_SENDGRID_KEY", base64.StdEncoding.EncodeToString([]byte("not a key, secret"))},
	} {
		if _, err := espHooks(Env{Getenv: func(k string) string { return map[string]string{tt.name: tt.value}[k] }}); repermit.ErrorCode(err) != repermit.EINVALID {
			t.Errorf("%s=%q: %v, want EINVALID", tt.name, tt.value, err)
		}
		c := newCLI(t, r)
		c.env[tt.name] = tt.value
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		code, _, errOut := c.runContext(ctx, "web")
		cancel()
		if code != 2 || !strings.Contains(errOut, tt.name) || strings.Contains(errOut, "secret") {
			t.Errorf("web with %s=%q: exit %d, %q; want 2 naming the variable, not its value", tt.name, tt.value, code, errOut)
		}
	}
}
