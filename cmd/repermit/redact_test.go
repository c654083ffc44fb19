package main

import (
	"strings"
	"testing"
)

// TestBadURLsNeverEchoCredentials gives every command that connects a
// REPERMIT_REDIS_URL or REPERMIT_SMTP_URL that holds a password and is bad
// in some way, and checks that nothing printed holds the password or the
// user name.
func TestBadURLsNeverEchoCredentials(t *testing.T) {
	const user, pass = "opsuser", "Hunter2Secret"
	for _, tc := range []struct {
		name, env, url string
		args           []string
	}{
		{"bad escape", "REPERMIT_REDIS_URL", "redis://" + user + ":" + pass + "%zz@127.0.0.1:6379/0", []string{"status", "x"}},
		{"bad host", "REPERMIT_REDIS_URL", "redis://" + user + ":" + pass + "@[::1/0", []string{"status", "x"}},
		{"bad port", "REPERMIT_REDIS_URL", "redis://" + user + ":" + pass + "@127.0.0.1:port/0", []string{"status", "x"}},
		{"bad db", "REPERMIT_REDIS_URL", "redis://" + user + ":" + pass + "@127.0.0.1:6379/zero", []string{"status", "x"}},
		{"bad scheme", "REPERMIT_REDIS_URL", "http://" + user + ":" + pass + "@127.0.0.1:6379/0", []string{"pause", "x"}},
		{"nobody listens", "REPERMIT_REDIS_URL", "redis://" + user + ":" + pass + "@127.0.0.1:1/0", []string{"export", "x", "--what", "confirmed"}},
		{"cluster nobody listens", "REPERMIT_REDIS_URL", "redis+cluster://" + user + ":" + pass + "@127.0.0.1:1,127.0.0.1:2/", []string{"status", "x"}},
		{"cluster bad db", "REPERMIT_REDIS_URL", "redis+cluster://" + user + ":" + pass + "@127.0.0.1:1/4", []string{"status", "x"}},
		{"sentinel without master", "REPERMIT_REDIS_URL", "redis+sentinel://" + user + ":" + pass + "@127.0.0.1:1/0", []string{"status", "x"}},
		{"sentinel nobody listens", "REPERMIT_REDIS_URL", "redis+sentinel://" + user + ":" + pass + "@127.0.0.1:1/0?master=m", []string{"status", "x"}},
		{"sentinel password, bad option", "REPERMIT_REDIS_URL", "redis+sentinel://127.0.0.1:1/0?master=m&sentinel_password=" + pass + "&bogus=1", []string{"status", "x"}},
		{"sentinel password, no master", "REPERMIT_REDIS_URL", "redis+sentinel://" + user + "@127.0.0.1:1/0?sentinel_password=" + pass, []string{"status", "x"}},
		{"demo bad escape", "REPERMIT_REDIS_URL", "redis://" + user + ":" + pass + "%zz@127.0.0.1:6379/0", []string{"demo", "--recipients", "5"}},
		{"demo bad host", "REPERMIT_REDIS_URL", "redis://" + user + ":" + pass + "@[::1/0", []string{"demo", "--recipients", "5"}},
		{"smtp bad escape", "REPERMIT_SMTP_URL", "smtp://" + user + ":" + pass + "%zz@127.0.0.1:25", []string{"demo", "--recipients", "5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t, nil)
			c.env[tc.env] = tc.url
			code, out, errOut := c.run(tc.args...)
			if code == 0 {
				t.Fatalf("exit 0 for %s", tc.url)
			}
			for _, secret := range []string{pass, user, pass[:6]} {
				if strings.Contains(out+errOut, secret) {
					t.Errorf("exit %d; output holds %q:\n%s%s", code, secret, out, errOut)
				}
			}
			if !strings.Contains(errOut, tc.env) && !strings.Contains(errOut, "redis") && !strings.Contains(errOut, "SMTP") {
				t.Errorf("the error does not say which setting is wrong: %s", errOut)
			}
		})
	}
}
