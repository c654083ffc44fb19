package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"net/mail"
	"net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/dkimtest"
	"github.com/repermit/repermit/redistest"
)

// writeMTACampaign writes a campaign for the given local parts at
// mtaDomain (locale en, or xx for a local part loc-xx) and returns the
// campaign file's path.
func (w *world) writeMTACampaign(id string, locals []string, deadline, reminder string) string {
	w.t.Helper()
	dir := filepath.Join(w.dir, id)
	must(w.t, os.MkdirAll(dir, 0o755))
	var csv strings.Builder
	csv.WriteString("email,name,locale\n")
	for i, l := range locals {
		locale := "en"
		if loc, ok := strings.CutPrefix(l, "loc-"); ok {
			locale = loc // one recipient per default locale
		}
		fmt.Fprintf(&csv, "%s@%s,Person %d,%s\n", l, mtaDomain, i, locale)
	}
	writeFile(w.t, filepath.Join(dir, "recipients.csv"), csv.String())
	writeFile(w.t, filepath.Join(dir, "campaign.yaml"), fmt.Sprintf(`id: %s
from: "E2E News <news@%s>"
subject: "Do you still want E2E News?"
recipients: recipients.csv
confirm_base_url: %s
controller: {name: ACME Handels GmbH, address: "Hauptstraße 1, 10115 Berlin", contact: privacy@acme.example, privacy_url: https://acme.example/privacy}
deadline: %s
reminders: [%s]
rate:
  per_second: 100
  per_domain_per_minute: {default: 100000}
`, id, mtaDomain, w.baseURL(), deadline, reminder))
	return filepath.Join(dir, "campaign.yaml")
}

// sendRaw hands a message to Postfix with the given envelope.
func (m *mta) sendRaw(from, to string, msg string) {
	m.t.Helper()
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	if err := smtp.SendMail(m.SMTP, nil, from, []string{to}, []byte(msg)); err != nil {
		m.t.Fatalf("send to %s through postfix: %v", to, err)
	}
}

func messageIDs(msgs []imapMessage) []string {
	var ids []string
	for _, m := range msgs {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
		if err != nil {
			ids = append(ids, "unparsable")
			continue
		}
		ids = append(ids, msg.Header.Get("Message-Id"))
	}
	slices.Sort(ids)
	return ids
}

func header(raw []byte, name string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	return msg.Header.Get(name)
}

// TestBouncesThroughPostfixAndDovecot sends a campaign through a real
// Postfix relay; three recipients have no mailbox, so Postfix writes the
// DSNs, to each mail's VERP Return-Path, and Dovecot files them in the
// bounce mailbox. A complaint (ARF), a vacation reply, an unrelated mail
// and a DSN with a forged token arrive in the same box. The worker's
// bounce poll must bounce exactly the three, unsubscribe the complainer,
// leave the forged DSN's recipient alone, move exactly the four reports
// it understood and leave the other three mails untouched. Every mail
// the existing recipients got must pass python3-dkim as Dovecot stored it.
func TestBouncesThroughPostfixAndDovecot(t *testing.T) {
	needReal(t)
	needMTA(t)
	t.Parallel()
	dkimReason := dkimtest.Available()
	if dkimReason != "" {
		t.Logf("!!! DKIM VERIFICATION AFTER POSTFIX SKIPPED: %s", dkimReason)
	}
	live := []string{"ada", "bob", "cyd"}
	ghosts := []string{"ghost1", "ghost2", "ghost3"}
	var localeUsers []string
	for _, l := range defaultLocales(t) {
		localeUsers = append(localeUsers, "loc-"+l)
	}
	m := startMTA(t, slices.Concat(live, localeUsers))
	key := dkimtest.NewKey(t, "rsa")

	r := redistest.New(t)
	smtpURL := "smtp://" + m.SMTP + "?tls=none&bounce_domain=" + bounceDomain +
		"&dkim_domain=" + mtaDomain + "&dkim_selector=rsa2026&dkim_key=" + url.QueryEscape(key.File)
	w := newWorld(t, r.URL, r.Prefix, smtpURL)
	w.extraEnv = []string{
		// Two messages a poll: the three that stay in the box arrive before
		// the complaint, which is read only if each poll moves on past
		// what it left alone.
		"REPERMIT_BOUNCE_IMAP_URL=imap://" + bounceAccount + ":" + mailboxPass + "@" + m.IMAP + "/INBOX?tls=none&batch=2",
		"REPERMIT_BOUNCE_INTERVAL=1s",
	}
	const id = "e2e-bounces"
	// ada, bob and cyd first, so that their initial mails go out before
	// the reminder; the reminder gives the box a second mail kind.
	w.launch(w.writeMTACampaign(id, slices.Concat(live, ghosts), "90s", "6s"))
	w.start("worker", "worker")

	// Postfix bounces the ghosts by itself; the worker reads the DSNs.
	st := w.waitStatus(id, 60*time.Second, "the three ghosts bounced", func(s status) bool {
		return s.Counts["bounced"] >= int64(len(ghosts))
	})
	waitUntil(t, 30*time.Second, "the initial mail in every live mailbox", func() bool {
		for _, u := range live {
			if len(m.Folder(u, "INBOX")) == 0 {
				return false
			}
		}
		return true
	})
	original := m.Folder("ada", "INBOX")[0].Raw
	bobVERP := strings.Trim(header(m.Folder("bob", "INBOX")[0].Raw, "Return-Path"), "<>")
	cydVERP := strings.Trim(header(m.Folder("cyd", "INBOX")[0].Raw, "Return-Path"), "<>")
	if !strings.HasPrefix(bobVERP, "bounces+") || !strings.HasSuffix(cydVERP, "@"+bounceDomain) {
		t.Fatalf("Return-Paths %q and %q are not VERP addresses at %s", bobVERP, cydVERP, bounceDomain)
	}
	// One character of cyd's token changed: a forged bounce.
	i := len("bounces+") + 5
	forged := cydVERP[:i] + map[bool]string{true: "b", false: "a"}[cydVERP[i] == 'a'] + cydVERP[i+1:]

	m.sendRaw("bob@"+mtaDomain, bobVERP, `From: Bob <bob@`+mtaDomain+`>
To: `+bobVERP+`
Subject: Out of office: Do you still want E2E News?
Message-ID: <vacation-1@e2e.example>
Date: Sun, 29 Nov 2026 07:00:01 +0000
Auto-Submitted: auto-replied
Content-Type: text/plain

I am away until Monday.
`)
	m.sendRaw("someone@elsewhere.example", bounceAccount+"@"+bounceDomain, `From: Someone <someone@elsewhere.example>
To: `+bounceAccount+`@`+bounceDomain+`
Subject: Question about your newsletter
Message-ID: <unrelated-1@elsewhere.example>
Date: Sun, 29 Nov 2026 07:00:02 +0000
Content-Type: text/plain

Hello, who do I talk to about advertising?
`)
	m.sendRaw("", forged, `From: Mail Delivery System <MAILER-DAEMON@forger.example>
To: `+forged+`
Subject: Undelivered Mail Returned to Sender
Message-ID: <forged-dsn-1@forger.example>
Date: Sun, 29 Nov 2026 07:00:03 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-boundary"

--dsn-boundary
Content-Type: text/plain

cyd@e2e.example: user unknown

--dsn-boundary
Content-Type: message/delivery-status

Reporting-MTA: dns; forger.example

Final-Recipient: rfc822; cyd@e2e.example
Action: failed
Status: 5.1.1

--dsn-boundary--
`)

	// Let the three be polled first.
	time.Sleep(1500 * time.Millisecond)
	m.sendRaw("complaints@isp.example", bounceAccount+"@"+bounceDomain, `From: Feedback Loop <complaints@isp.example>
To: `+bounceAccount+`@`+bounceDomain+`
Subject: Abuse report
Message-ID: <arf-1@isp.example>
Date: Sun, 29 Nov 2026 07:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf-boundary"

--arf-boundary
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for a message received from IP 127.0.0.1.

--arf-boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: e2e-fbl/1.0
Version: 1
Source-IP: 127.0.0.1
Arrival-Date: Sun, 29 Nov 2026 06:59:00 +0000

--arf-boundary
Content-Type: message/rfc822
Content-Disposition: inline

`+string(bytes.ReplaceAll(original, []byte("\r\n"), []byte("\n")))+`
--arf-boundary--
`)
	st = w.waitStatus(id, 60*time.Second, "ada unsubscribed by her complaint", func(s status) bool {
		return s.Counts["unsubscribed"] >= 1
	})
	// Three more polls, for anything that would be done late or twice.
	time.Sleep(3500 * time.Millisecond)
	st = w.status(id)
	if st.Counts["bounced"] != 3 || st.Counts["unsubscribed"] != 1 || st.Counts["sent"] != 2 {
		t.Errorf("counts %v, want exactly 3 bounced, 1 unsubscribed (the complaint), 2 sent (bob after his vacation reply, cyd after the forged DSN)", st)
	}
	// Exactly whom: the ghosts bounced, ada unsubscribed by her complaint,
	// bob and cyd on no list (the counts alone would not notice a bounce
	// applied to the wrong recipient).
	wantSuppressed := map[string]string{repermit.AddressHash("ada@" + mtaDomain): "unsubscribed"}
	for _, g := range ghosts {
		wantSuppressed[repermit.AddressHash(g+"@"+mtaDomain)] = "bounced"
	}
	gotSuppressed := map[string]string{}
	for _, row := range readCSV(t, w.run("export", id, "--what", "suppressed"))[1:] {
		gotSuppressed[row[0]] = row[1]
	}
	if !maps.Equal(gotSuppressed, wantSuppressed) {
		t.Errorf("suppressed export %v, want exactly %v (ghost1-3 bounced, ada unsubscribed)", gotSuppressed, wantSuppressed)
	}
	left := messageIDs(m.Folder(bounceAccount, "INBOX"))
	wantLeft := []string{"<forged-dsn-1@forger.example>", "<unrelated-1@elsewhere.example>", "<vacation-1@e2e.example>"}
	if !slices.Equal(left, wantLeft) {
		t.Errorf("bounce INBOX holds %v, want exactly %v", left, wantLeft)
	}
	processed := m.Folder(bounceAccount, "repermit-processed")
	var dsns, arfs int
	for _, p := range processed {
		ct := header(p.Raw, "Content-Type")
		switch {
		case strings.Contains(ct, "delivery-status"):
			dsns++
		case strings.Contains(ct, "feedback-report"):
			arfs++
		}
	}
	if len(processed) != 4 || dsns != 3 || arfs != 1 {
		t.Errorf("processed folder holds %d messages (%d DSNs, %d ARF), want 4 (3 DSNs from Postfix, 1 ARF)", len(processed), dsns, arfs)
	}
	t.Logf("after Postfix and Dovecot: %v; bounce INBOX left %d (vacation, unrelated, forged), processed %d (%d DSN, %d ARF)",
		st, len(left), len(processed), dsns, arfs)

	if dkimReason != "" {
		return
	}
	// bob and cyd stayed silent: the reminder reaches them too.
	verifyThroughPostfix(t, m, id, []string{"bob", "cyd"}, "rsa2026", key)

	// Every default mail, in every locale, with each key type (Ed25519
	// after RFC 8463), each in a deployment of its own without VERP.
	for _, alg := range []string{"rsa", "ed25519"} {
		k := dkimtest.NewKey(t, alg)
		r2 := redistest.New(t)
		w2 := newWorld(t, r2.URL, r2.Prefix, "smtp://"+m.SMTP+"?tls=none&dkim_domain="+mtaDomain+
			"&dkim_selector="+alg+"2026&dkim_key="+url.QueryEscape(k.File))
		id2 := "e2e-locales-" + alg
		w2.launch(w2.writeMTACampaign(id2, localeUsers, "60s", "5s"))
		w2.start("worker", "worker")
		verifyThroughPostfix(t, m, id2, localeUsers, alg+"2026", k)
	}
}

// verifyThroughPostfix waits for the initial mail and the reminder of
// campaign id in each user's mailbox and has python3-dkim verify them as
// Dovecot stored them.
func verifyThroughPostfix(t *testing.T, m *mta, id string, users []string, selector string, key dkimtest.Key) {
	t.Helper()
	mails := func(u string) []imapMessage {
		var out []imapMessage
		for _, msg := range m.Folder(u, "INBOX") {
			if strings.Contains(header(msg.Raw, "Message-Id"), "."+id+".") {
				out = append(out, msg)
			}
		}
		return out
	}
	waitUntil(t, 60*time.Second, "initial mail and reminder of "+id+" in every mailbox", func() bool {
		for _, u := range users {
			if len(mails(u)) < 2 {
				return false
			}
		}
		return true
	})
	var raws [][]byte
	var who []string
	for _, u := range users {
		for _, msg := range mails(u) {
			raws = append(raws, msg.Raw)
			who = append(who, u)
		}
	}
	verified := 0
	for i, r := range dkimtest.VerifyAll(t, raws, mtaDomain, selector, key) {
		if r.OK {
			verified++
		} else {
			t.Errorf("python3-dkim rejects the %s mail %s got through Postfix: %s\n%s", key.Algorithm, who[i], r.Report, raws[i])
		}
	}
	t.Logf("python3-dkim: %d of %d %s-signed mails (initial and reminder, %d recipients) pass after Postfix and Dovecot", verified, len(raws), key.Algorithm, len(users))
}
