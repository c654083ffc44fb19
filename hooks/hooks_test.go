package hooks_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/hooks"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/token"
)

var now = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

type env struct {
	t       *testing.T
	store   *redisstore.Store
	signer  *token.Signer
	c       repermit.Campaign
	handler http.Handler

	mailgunKey  []byte
	sendgridKey *ecdsa.PrivateKey
	snsKey      *rsa.PrivateKey
	snsCertURL  string
	subscribed  atomic.Int32
}

func newEnv(t *testing.T, n int) *env {
	t.Helper()
	ctx := context.Background()
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	t0 := now.Add(-time.Hour)
	c := repermit.Campaign{ID: "news", From: "ACME <news@acme.example>", Subject: "s", StartAt: t0, Deadline: t0.Add(24 * time.Hour)}
	imp, err := st.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	idxs := make([]int64, n)
	for i := range n {
		if err := imp.Add(ctx, fmt.Sprintf("a%d@example.org", i), "", "en", nil); err != nil {
			t.Fatal(err)
		}
		idxs[i] = int64(i)
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: c.ID, Imported: int64(n)}); err != nil {
		t.Fatal(err)
	}
	c = imp.Campaign()
	if errs, err := st.ClaimBatch(ctx, c.ID, idxs, 1, t0, time.Minute); err != nil || errors.Join(errs...) != nil {
		t.Fatal(err, errs)
	}
	if errs, err := st.MarkSentBatch(ctx, c.ID, idxs, 1, t0); err != nil || errors.Join(errs...) != nil {
		t.Fatal(err, errs)
	}
	sig, err := token.NewSigner([][]byte{[]byte("0123456789abcdef0123456789abcdef-hooks")})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: st, signer: sig, c: c, mailgunKey: []byte("key-mailgun-signing-0123456789")}
	e.sendgridKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.snsKey, _ = rsa.GenerateKey(rand.Reader, 2048)

	// A stand-in for Amazon SNS: serves the signing certificate and the
	// SubscribeURL over TLS; the hooks' client reaches it for any
	// sns.*.amazonaws.com host.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &e.snsKey.PublicKey, e.snsKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	sns := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, ".pem"):
			w.Write(certPEM)
		case r.URL.Query().Get("Action") == "ConfirmSubscription":
			e.subscribed.Add(1)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(sns.Close)
	tr := sns.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = "example.com" // httptest's certificate
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, sns.Listener.Addr().String())
	}
	e.snsCertURL = "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-test.pem"

	sgPub, err := x509.MarshalPKIXPublicKey(&e.sendgridKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sgKey, err := hooks.ParseSendGridKey(base64.StdEncoding.EncodeToString(sgPub))
	if err != nil {
		t.Fatal(err)
	}
	e.handler = hooks.New(hooks.Config{
		Processor:    &bounces.Processor{Store: st, Signer: sig, Now: func() time.Time { return now }},
		PostmarkUser: "pm-user", PostmarkPassword: "pm-password-0123456789",
		SendGridKey: sgKey,
		MailgunKey:  e.mailgunKey,
		SES:         true,
		SNSClient:   &http.Client{Transport: tr, Timeout: 5 * time.Second},
		Now:         func() time.Time { return now },
	})
	return e
}

func (e *env) msgID(idx int) string {
	return "<" + mailer.MessageID(e.c.ID, int64(idx), mailer.Initial, e.c.From) + ">"
}

func (e *env) post(path string, body []byte, hdr map[string]string) int {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec.Code
}

func (e *env) state(idx int) repermit.State {
	e.t.Helper()
	r, err := e.store.Recipient(context.Background(), e.c.ID, int64(idx))
	if err != nil {
		e.t.Fatal(err)
	}
	return r.State
}

// mailgunBody is a Mailgun webhook as its documentation shows one: the
// signature object and the event-data of a failed or complained event.
func (e *env) mailgunBody(key []byte, ts time.Time, event, severity string, idx int) []byte {
	tsStr := strconv.FormatInt(ts.Unix(), 10)
	tok := fmt.Sprintf("%050d", idx)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(tsStr + tok))
	rcpt := fmt.Sprintf("a%d@example.org", idx)
	data := map[string]any{
		"id": fmt.Sprintf("G9Bn5sl1TC6nu79C8C0bw%d", idx), "timestamp": float64(ts.UnixMicro()) / 1e6, "log-level": "error",
		"event": event, "recipient": rcpt, "recipient-domain": "example.org", "tags": []string{}, "campaigns": []string{},
		"user-variables": map[string]string{}, "flags": map[string]bool{"is-routed": false, "is-authenticated": true, "is-test-mode": false},
		"envelope": map[string]string{"sender": "news@acme.example", "transport": "smtp", "targets": rcpt},
		"message": map[string]any{
			"headers":     map[string]string{"to": rcpt, "message-id": strings.Trim(e.msgID(idx), "<>"), "from": "ACME <news@acme.example>", "subject": "Do you still want ACME News?"},
			"attachments": []string{}, "size": 4711,
		},
	}
	if event == "failed" {
		data["severity"], data["reason"] = severity, "bounce"
		data["delivery-status"] = map[string]any{"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist",
			"attempt-no": 1, "description": "", "session-seconds": 0.43, "mx-host": "mx.example.org", "tls": true, "certificate-verified": true}
	}
	b, _ := json.Marshal(map[string]any{
		"signature":  map[string]string{"timestamp": tsStr, "token": tok, "signature": hex.EncodeToString(mac.Sum(nil))},
		"event-data": data,
	})
	return b
}

func (e *env) sendgrid(key *ecdsa.PrivateKey, ts time.Time, events ...map[string]any) (int, []byte) {
	body, _ := json.Marshal(events)
	tsStr := strconv.FormatInt(ts.Unix(), 10)
	digest := sha256.Sum256(append([]byte(tsStr), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		e.t.Fatal(err)
	}
	return e.post("/hooks/sendgrid", body, map[string]string{
		"X-Twilio-Email-Event-Webhook-Signature": base64.StdEncoding.EncodeToString(sig),
		"X-Twilio-Email-Event-Webhook-Timestamp": tsStr,
	}), body
}

func (e *env) postmark(user, pass string, rec map[string]any) int {
	body, _ := json.Marshal(rec)
	req := httptest.NewRequest(http.MethodPost, "/hooks/postmark", bytes.NewReader(body))
	req.SetBasicAuth(user, pass)
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, req)
	return w.Code
}

// sns signs an SNS message as AWS does: RSA over the canonical string
// with SHA256 (SignatureVersion 2), or with SHA1 when m asks for
// SignatureVersion 1, what a topic signs with unless set otherwise.
func (e *env) sns(key *rsa.PrivateKey, certURL string, m map[string]string) []byte {
	if m["SignatureVersion"] == "" {
		m["SignatureVersion"] = "2"
	}
	m["SigningCertURL"] = certURL
	var s strings.Builder
	fields := []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	if m["Type"] != "Notification" {
		fields = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	for _, f := range fields {
		if v, ok := m[f]; ok {
			s.WriteString(f + "\n" + v + "\n")
		}
	}
	hash, digest := crypto.SHA256, sha256.Sum256([]byte(s.String()))
	h := digest[:]
	if m["SignatureVersion"] == "1" {
		d := sha1.Sum([]byte(s.String()))
		hash, h = crypto.SHA1, d[:]
	}
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, hash, h)
	if err != nil {
		e.t.Fatal(err)
	}
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
	b, _ := json.Marshal(m)
	return b
}

// sesNotification is an Amazon SES bounce or complaint notification, in
// the SNS envelope of an HTTPS subscription, with the fields AWS documents.
func (e *env) sesNotification(msgID, kind, bounceType, source string) map[string]string {
	at := now.Add(-time.Minute).Format("2006-01-02T15:04:05.000Z")
	rcpt := "x@example.org"
	n := map[string]any{"notificationType": kind, "mail": map[string]any{
		"timestamp": at, "messageId": "0100018c5b2e1f3a-2f4c6e8a-1b3d-4f5a-9c7e-0123456789ab-000000",
		"source": source, "sourceArn": "arn:aws:ses:eu-central-1:123456789012:identity/acme.example",
		"sourceIp": "192.0.2.10", "sendingAccountId": "123456789012", "destination": []string{rcpt},
		"commonHeaders": map[string]any{"from": []string{"ACME <news@acme.example>"}, "to": []string{rcpt},
			"messageId": msgID, "subject": "Do you still want ACME News?"},
	}}
	switch kind {
	case "Bounce":
		n["bounce"] = map[string]any{"bounceType": bounceType, "bounceSubType": "General", "timestamp": at,
			"feedbackId": "0100018c5b2e2a11-feedback-000000", "reportingMTA": "dsn; a1-23.smtp-out.eu-central-1.amazonses.com",
			"bouncedRecipients": []map[string]string{{"emailAddress": rcpt, "action": "failed", "status": "5.1.1",
				"diagnosticCode": "smtp; 550 5.1.1 user unknown"}}}
	case "Complaint":
		n["complaint"] = map[string]any{"complainedRecipients": []map[string]string{{"emailAddress": rcpt}}, "timestamp": at,
			"feedbackId": "0100018c5b2e2a12-feedback-000000", "complaintFeedbackType": "abuse", "userAgent": "Yahoo!-Mail-Feedback/2.0"}
	}
	msg, _ := json.Marshal(n)
	return map[string]string{"Type": "Notification", "MessageId": "sns-" + msgID + kind, "TopicArn": "arn:aws:sns:eu-central-1:123456789012:ses-bounces",
		"Message": string(msg), "Timestamp": now.Format("2006-01-02T15:04:05.000Z"),
		// Not signed: AWS leaves it out of the string to sign.
		"UnsubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:eu-central-1:123456789012:ses-bounces:0f1e2d3c"}
}

func TestEachProviderIsAppliedWhenAuthenticAndRefusedWhenForged(t *testing.T) {
	e := newEnv(t, 20)
	otherSG, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	verp := func(idx int) string {
		return e.signer.BounceAddress(token.Claims{Campaign: e.c.ID, CampaignSeq: e.c.Seq, Recipient: uint32(idx), Deadline: e.c.Deadline}, "bounce.acme.example")
	}
	// A SendGrid event as its Event Webhook reference shows it: smtp-id is
	// SendGrid's own id, not the mail's Message-ID; the unique_args of the
	// mail's X-SMTPAPI header come back as fields of the event.
	sg := func(event, typ string, idx int) map[string]any {
		return map[string]any{"email": fmt.Sprintf("a%d@example.org", idx), "timestamp": now.Unix(),
			"smtp-id": fmt.Sprintf("<14c5d75ce93.dfd.64b4%02d@ismtpd-555>", idx), mailer.SendGridIDField: strings.Trim(e.msgID(idx), "<>"),
			"event": event, "type": typ, "category": []string{"re-permission"}, "ip": "192.0.2.10",
			"reason": "550 5.1.1 The email account that you tried to reach does not exist.", "status": "5.1.1", "bounce_classification": "Invalid Address",
			"sg_event_id": fmt.Sprintf("sg-%d-%s", idx, event), "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}
	}
	// An event of a mail that kept its Message-ID as smtp-id, and no
	// unique_args.
	sgBySMTPID := func(event, typ string, idx int) map[string]any {
		ev := sg(event, typ, idx)
		delete(ev, mailer.SendGridIDField)
		ev["smtp-id"] = e.msgID(idx)
		return ev
	}
	// A Postmark bounce or spam complaint webhook as documented. IDs are
	// 64-bit: beyond a float64's precision, so two differ only if read as
	// numbers exactly.
	pm := func(recordType, typ string, idx int) map[string]any {
		return map[string]any{"RecordType": recordType, "MessageStream": "outbound", "ID": int64(4323372036854775800) + int64(idx),
			"Type": typ, "TypeCode": map[string]int{"HardBounce": 1, "SpamComplaint": 512}[typ], "Name": typ, "Tag": "",
			"MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 23, "Description": "The server was unable to deliver your message",
			"Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.", "Email": fmt.Sprintf("a%d@example.org", idx),
			"From": "news@acme.example", "BouncedAt": now.Format(time.RFC3339), "DumpAvailable": true, "Inactive": true, "CanActivate": true,
			"Subject": "Do you still want ACME News?", "Content": "", "Metadata": map[string]string{"repermit-id": strings.Trim(e.msgID(idx), "<>")}}
	}
	code := func(c int, _ []byte) int { return c }
	version := func(v string, m map[string]string) map[string]string { m["SignatureVersion"] = v; return m }
	tests := []struct {
		name  string
		do    func() int
		code  int
		idx   int
		state repermit.State
	}{
		{"mailgun permanent failure", func() int {
			return e.post("/hooks/mailgun", e.mailgunBody(e.mailgunKey, now, "failed", "permanent", 0), nil)
		}, 204, 0, repermit.StateBounced},
		{"mailgun complaint", func() int {
			return e.post("/hooks/mailgun", e.mailgunBody(e.mailgunKey, now, "complained", "", 1), nil)
		}, 204, 1, repermit.StateUnsubscribed},
		{"mailgun forged: other key", func() int {
			return e.post("/hooks/mailgun", e.mailgunBody([]byte("not-the-key"), now, "failed", "permanent", 10), nil)
		}, 401, 10, repermit.StateSent},
		{"mailgun replayed an hour later", func() int {
			return e.post("/hooks/mailgun", e.mailgunBody(e.mailgunKey, now.Add(-time.Hour), "failed", "permanent", 10), nil)
		}, 401, 10, repermit.StateSent},
		{"sendgrid bounce", func() int { return code(e.sendgrid(e.sendgridKey, now, sg("bounce", "bounce", 2))) }, 204, 2, repermit.StateBounced},
		{"sendgrid spam report", func() int { return code(e.sendgrid(e.sendgridKey, now, sg("spamreport", "", 3))) }, 204, 3, repermit.StateUnsubscribed},
		{"sendgrid deferred", func() int { return code(e.sendgrid(e.sendgridKey, now, sg("deferred", "", 19))) }, 204, 19, repermit.StateSent},
		{"sendgrid deferred again, SendGrid's next retry of the same mail: no second soft bounce", func() int {
			retry := sg("deferred", "", 19)
			retry["sg_event_id"], retry["attempt"] = "sg-19-deferred-attempt-2", "2"
			return code(e.sendgrid(e.sendgridKey, now, retry))
		}, 204, 19, repermit.StateSent},
		{"sendgrid bounce named by smtp-id only", func() int {
			return code(e.sendgrid(e.sendgridKey, now, sgBySMTPID("bounce", "bounce", 16)))
		}, 204, 16, repermit.StateBounced},
		{"sendgrid forged: other key", func() int { return code(e.sendgrid(otherSG, now, sg("bounce", "bounce", 11))) }, 401, 11, repermit.StateSent},
		{"sendgrid forged: body changed after signing", func() int {
			_, body := e.sendgrid(e.sendgridKey, now, sg("delivered", "", 11))
			forged := bytes.Replace(body, []byte(`"delivered"`), []byte(`"spamreport"`), 1)
			tsStr := strconv.FormatInt(now.Unix(), 10)
			digest := sha256.Sum256(append([]byte(tsStr), body...))
			sig, _ := ecdsa.SignASN1(rand.Reader, e.sendgridKey, digest[:])
			return e.post("/hooks/sendgrid", forged, map[string]string{
				"X-Twilio-Email-Event-Webhook-Signature": base64.StdEncoding.EncodeToString(sig),
				"X-Twilio-Email-Event-Webhook-Timestamp": tsStr})
		}, 401, 11, repermit.StateSent},
		{"postmark hard bounce", func() int { return e.postmark("pm-user", "pm-password-0123456789", pm("Bounce", "HardBounce", 4)) }, 204, 4, repermit.StateBounced},
		{"postmark hard bounce of another mail, its ID a few above", func() int {
			return e.postmark("pm-user", "pm-password-0123456789", pm("Bounce", "HardBounce", 18))
		}, 204, 18, repermit.StateBounced},
		{"postmark spam complaint", func() int {
			return e.postmark("pm-user", "pm-password-0123456789", pm("SpamComplaint", "SpamComplaint", 5))
		}, 204, 5, repermit.StateUnsubscribed},
		{"postmark forged: wrong password", func() int { return e.postmark("pm-user", "guess", pm("Bounce", "HardBounce", 12)) }, 401, 12, repermit.StateSent},
		{"ses permanent bounce by commonHeaders' Message-ID", func() int {
			return e.post("/hooks/ses", e.sns(e.snsKey, e.snsCertURL, e.sesNotification(e.msgID(6), "Bounce", "Permanent", "news@acme.example")), nil)
		}, 204, 6, repermit.StateBounced},
		{"ses permanent bounce by VERP source", func() int {
			return e.post("/hooks/ses", e.sns(e.snsKey, e.snsCertURL, e.sesNotification("<0100018c5b2e1f3b-ses@email.amazonses.com>", "Bounce", "Permanent", verp(7))), nil)
		}, 204, 7, repermit.StateBounced},
		{"ses permanent bounce signed with SignatureVersion 1 (SHA1)", func() int {
			return e.post("/hooks/ses", e.sns(e.snsKey, e.snsCertURL, version("1", e.sesNotification(e.msgID(9), "Bounce", "Permanent", ""))), nil)
		}, 204, 9, repermit.StateBounced},
		{"ses forged: a SignatureVersion 2 signature labelled 1", func() int {
			b := e.sns(e.snsKey, e.snsCertURL, e.sesNotification(e.msgID(13), "Bounce", "Permanent", ""))
			return e.post("/hooks/ses", bytes.Replace(b, []byte(`"SignatureVersion":"2"`), []byte(`"SignatureVersion":"1"`), 1), nil)
		}, 401, 13, repermit.StateSent},
		{"ses permanent bounce with SES's own Message-ID, named by the original headers", func() int {
			n := e.sesNotification("<0100018c5b2e1f3a-ses@email.amazonses.com>", "Bounce", "Permanent", "news@acme.example")
			var msg map[string]any
			if err := json.Unmarshal([]byte(n["Message"]), &msg); err != nil {
				t.Fatal(err)
			}
			msg["mail"].(map[string]any)["headers"] = []map[string]string{
				{"name": "From", "value": "ACME <news@acme.example>"},
				{"name": "Message-ID", "value": "<0100018c5b2e1f3a-ses@email.amazonses.com>"},
				{"name": mailer.PostmarkMetadataHeader, "value": strings.Trim(e.msgID(17), "<>")},
			}
			b, _ := json.Marshal(msg)
			n["Message"] = string(b)
			return e.post("/hooks/ses", e.sns(e.snsKey, e.snsCertURL, n), nil)
		}, 204, 17, repermit.StateBounced},
		{"ses complaint", func() int {
			return e.post("/hooks/ses", e.sns(e.snsKey, e.snsCertURL, e.sesNotification(e.msgID(8), "Complaint", "", "")), nil)
		}, 204, 8, repermit.StateUnsubscribed},
		{"ses forged: signed by another key", func() int {
			return e.post("/hooks/ses", e.sns(otherRSA, e.snsCertURL, e.sesNotification(e.msgID(13), "Bounce", "Permanent", "")), nil)
		}, 401, 13, repermit.StateSent},
		{"ses forged: certificate from another host", func() int {
			return e.post("/hooks/ses", e.sns(e.snsKey, "https://sns.eu-central-1.amazonaws.com.evil.example/cert.pem", e.sesNotification(e.msgID(13), "Bounce", "Permanent", "")), nil)
		}, 401, 13, repermit.StateSent},
		{"ses forged: certificate over http", func() int {
			return e.post("/hooks/ses", e.sns(e.snsKey, "http://sns.eu-central-1.amazonaws.com/cert.pem", e.sesNotification(e.msgID(13), "Bounce", "Permanent", "")), nil)
		}, 401, 13, repermit.StateSent},
		{"ses transient bounce counts, no change", func() int {
			return e.post("/hooks/ses", e.sns(e.snsKey, e.snsCertURL, e.sesNotification(e.msgID(14), "Bounce", "Transient", "")), nil)
		}, 204, 14, repermit.StateSent},
		{"mail that is not repermit's", func() int {
			return e.post("/hooks/ses", e.sns(e.snsKey, e.snsCertURL, e.sesNotification("<someone-else@x>", "Bounce", "Permanent", "")), nil)
		}, 204, 15, repermit.StateSent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.do(); got != tt.code {
				t.Errorf("status %d, want %d", got, tt.code)
			}
			if got := e.state(tt.idx); got != tt.state {
				t.Errorf("recipient %d is %s, want %s", tt.idx, got, tt.state)
			}
		})
	}
	stats, err := e.store.Stats(context.Background(), e.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Feedback["bounced:webhook"] != 9 || stats.Feedback["complaint:webhook"] != 4 || stats.Feedback["soft:webhook"] != 2 {
		t.Errorf("feedback %v, want 9 hard, 4 complaints, 2 soft (SES, SendGrid's deferred mail once) from webhooks", stats.Feedback)
	}
}

func TestSNSSubscriptionIsConfirmedOnlyWhenSigned(t *testing.T) {
	e := newEnv(t, 1)
	sub := func(subscribeURL string) map[string]string {
		return map[string]string{"Type": "SubscriptionConfirmation", "MessageId": "m1", "Token": "tok",
			"TopicArn": "arn:aws:sns:eu-central-1:123456789012:ses-bounces", "Message": "You have chosen to subscribe…",
			"SubscribeURL": subscribeURL, "Timestamp": now.Format(time.RFC3339)}
	}
	good := "https://sns.eu-central-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=tok"
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := []struct {
		name      string
		body      []byte
		code      int
		confirmed int32
	}{
		{"forged signature", e.sns(otherRSA, e.snsCertURL, sub(good)), 401, 0},
		{"subscribe URL elsewhere", e.sns(e.snsKey, e.snsCertURL, sub("https://evil.example/?Action=ConfirmSubscription")), 401, 0},
		{"authentic", e.sns(e.snsKey, e.snsCertURL, sub(good)), 204, 1},
	}
	for _, tt := range tests {
		if got := e.post("/hooks/ses", tt.body, nil); got != tt.code {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.code)
		}
		if got := e.subscribed.Load(); got != tt.confirmed {
			t.Errorf("%s: %d confirmations fetched, want %d", tt.name, got, tt.confirmed)
		}
	}
}
