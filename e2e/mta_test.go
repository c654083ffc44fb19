package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// The Postfix/Dovecot test runs a real Postfix as the campaign's relay and
// a real Dovecot (LMTP for delivery, IMAP for reading) on loopback ports
// of their own, under a temporary directory, beside any system instance.
const (
	postfixBin    = "/usr/sbin/postfix"
	dovecotBin    = "/usr/sbin/dovecot"
	dovecotLMTP   = "/usr/lib/dovecot/lmtp"
	mtaDomain     = "e2e.example"        // the recipients' domain, delivered to Dovecot
	bounceDomain  = "bounce.e2e.example" // the VERP domain, delivered to Dovecot's "bounces" user
	mailboxPass   = "e2e-imap-password"
	bounceAccount = "bounces"
)

// needMTA skips the test, loudly, when Postfix or Dovecot cannot run here.
// .ci/run installs them (apt: postfix, dovecot-imapd, dovecot-lmtpd).
func needMTA(t *testing.T) {
	t.Helper()
	var missing []string
	for _, bin := range []string{postfixBin, dovecotBin, dovecotLMTP} {
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		t.Skipf("SKIPPING THE POSTFIX/DOVECOT TEST: %s missing (apt-get install postfix dovecot-imapd dovecot-lmtpd; .ci/run does)", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING THE POSTFIX/DOVECOT TEST: it must run as root (Postfix and Dovecot drop privileges themselves)")
	}
	for _, name := range []string{"postfix", "dovecot", "dovenull", "nobody"} {
		if _, err := user.Lookup(name); err != nil {
			t.Skipf("SKIPPING THE POSTFIX/DOVECOT TEST: system user %s missing: %v", name, err)
		}
	}
}

// mta is a running Postfix relay delivering over LMTP to a running Dovecot.
type mta struct {
	t    *testing.T
	dir  string
	SMTP string // Postfix's smtpd, host:port
	IMAP string // Dovecot's IMAP, host:port
}

// startMTA starts Dovecot with one IMAP account per name in users (the
// password is mailboxPass) plus bounceAccount, and Postfix accepting mail
// for mtaDomain and bounceDomain on loopback: every address is accepted at
// SMTP and handed to Dovecot, which refuses unknown users, so Postfix
// itself writes the DSNs, to the Return-Path.
func startMTA(t *testing.T, users []string) *mta {
	t.Helper()
	// Postfix and Dovecot run as their own users: the tree must be
	// traversable, which t.TempDir is not.
	dir, err := os.MkdirTemp("", "repermit-e2e-mta-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	m := &mta{t: t, dir: dir,
		SMTP: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		IMAP: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	lmtp := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	nobody, _ := user.Lookup("nobody")
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	for _, d := range []string{"dovecot", "mail", "postfix/conf", "postfix/queue", "postfix/data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Chmod(dir, 0o755))
	must(t, os.Chown(filepath.Join(dir, "mail"), uid, gid))
	pf, _ := user.Lookup("postfix")
	pfUID, _ := strconv.Atoi(pf.Uid)
	must(t, os.Chown(filepath.Join(dir, "postfix/data"), pfUID, -1))

	// Dovecot.
	var passwd strings.Builder
	for _, u := range append([]string{bounceAccount}, users...) {
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s:%d:%d::%s::\n", u, mailboxPass, uid, gid, filepath.Join(dir, "mail", u))
	}
	writeFile(t, filepath.Join(dir, "dovecot/users"), passwd.String())
	imapHost, imapPort, _ := net.SplitHostPort(m.IMAP)
	_, lmtpPort, _ := net.SplitHostPort(lmtp)
	writeFile(t, filepath.Join(dir, "dovecot/dovecot.conf"), fmt.Sprintf(`
base_dir = %[1]s/dovecot/run
state_dir = %[1]s/dovecot/state
log_path = %[1]s/dovecot/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:~/Maildir
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%n %[1]s/dovecot/users
}
userdb {
  driver = passwd-file
  args = username_format=%%n %[1]s/dovecot/users
}
service imap-login {
  inet_listener imap {
    address = %[2]s
    port = %[3]s
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[4]s
  }
  unix_listener lmtp {
    mode = 0600
  }
}
`, dir, imapHost, imapPort, lmtpPort))
	dovecot := exec.Command(dovecotBin, "-F", "-c", filepath.Join(dir, "dovecot/dovecot.conf"))
	out, err := os.Create(filepath.Join(dir, "dovecot/stdout"))
	must(t, err)
	dovecot.Stdout, dovecot.Stderr = out, out
	must(t, dovecot.Start())
	dovecotDone := make(chan struct{})
	go func() { dovecot.Wait(); out.Close(); close(dovecotDone) }()
	t.Cleanup(func() {
		dovecot.Process.Signal(syscall.SIGTERM)
		select {
		case <-dovecotDone:
		case <-time.After(10 * time.Second):
			dovecot.Process.Kill()
			<-dovecotDone
		}
		if t.Failed() {
			t.Logf("--- end of dovecot log:\n%s", tail(filepath.Join(dir, "dovecot/dovecot.log"), 30))
		}
	})

	// Postfix: its own instance (postfix -c DIR), master.cf from the
	// system's with smtpd moved to our port.
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Skipf("SKIPPING THE POSTFIX/DOVECOT TEST: %v", err)
	}
	var mc strings.Builder
	for _, line := range strings.Split(string(master), "\n") {
		if strings.HasPrefix(line, "smtp ") && strings.Contains(line, " inet ") {
			line = m.SMTP + " inet n - n - - smtpd"
		}
		mc.WriteString(line + "\n")
	}
	conf := filepath.Join(dir, "postfix/conf")
	writeFile(t, filepath.Join(conf, "master.cf"), mc.String())
	writeFile(t, filepath.Join(conf, "main.cf"), fmt.Sprintf(`
compatibility_level = 3.6
queue_directory = %[1]s/postfix/queue
data_directory = %[1]s/postfix/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.%[2]s
mydomain = %[2]s
myorigin = %[2]s
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_reject_unlisted_recipient = no
virtual_mailbox_domains = %[2]s, %[3]s
virtual_mailbox_maps =
virtual_transport = lmtp:inet:%[4]s
recipient_delimiter = +
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/postfix/maillog
smtp_dns_support_level = disabled
lmtp_host_lookup = native
alias_maps =
alias_database =
biff = no
`, dir, mtaDomain, bounceDomain, lmtp))
	postfix := func(args ...string) error {
		cmd := exec.Command(postfixBin, append([]string{"-c", conf}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("postfix %s: %v: %s\n%s", strings.Join(args, " "), err, b, tail(filepath.Join(dir, "postfix/maillog"), 20))
		}
		return nil
	}
	if err := postfix("start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := postfix("stop"); err != nil {
			t.Log(err)
		}
		if t.Failed() {
			t.Logf("--- end of postfix log:\n%s", tail(filepath.Join(dir, "postfix/maillog"), 40))
		}
	})
	for _, addr := range []string{m.SMTP, m.IMAP, lmtp} {
		waitUntil(t, 20*time.Second, addr+" accepts connections", func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
	}
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

// imapMessage is one message of a folder, as stored.
type imapMessage struct {
	UID imap.UID
	Raw []byte
}

// Folder reads every message of a user's folder, without changing flags;
// a folder that does not exist is empty.
func (m *mta) Folder(username, folder string) []imapMessage {
	m.t.Helper()
	c, err := imapclient.DialInsecure(m.IMAP, nil)
	must(m.t, err)
	defer c.Close()
	must(m.t, c.Login(username, mailboxPass).Wait())
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return nil
	}
	found, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	must(m.t, err)
	if len(found.AllUIDs()) == 0 {
		return nil
	}
	body := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(found.AllUIDs()...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	must(m.t, err)
	out := make([]imapMessage, len(msgs))
	for i, msg := range msgs {
		out[i] = imapMessage{UID: msg.UID, Raw: msg.FindBodySection(body)}
	}
	c.Logout().Wait()
	return out
}
