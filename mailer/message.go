package mailer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// Build renders the mail of the given kind for one recipient: a
// multipart/alternative message (text, plus HTML when the chosen locale has
// an HTML template), a Message-ID that depends only on campaign, recipient
// and kind, so that a repeated send of the same mail can be recognised
// downstream, and the RFC 8058 one-click List-Unsubscribe headers. It adds
// no tracking of any kind.
//
// The parts that do not depend on the recipient are rendered once per
// campaign (by pointer), locale and kind and kept in t, so a campaign must
// not be changed in place after its first Build with the same Templates.
func (t *Templates) Build(d Data, kind Kind) (*gomail.Msg, error) {
	if d.Campaign == nil || d.Recipient == nil {
		return nil, errors.New("build mail: campaign and recipient are required")
	}
	if d.ConfirmURL == "" || d.UnsubscribeURL == "" {
		return nil, errors.New("build mail: confirm and unsubscribe URLs are required")
	}
	parts, err := t.renderFor(d, kind)
	if err != nil {
		return nil, err
	}

	// go-mail's default User-Agent names the library, which tells nobody
	// anything useful.
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := m.From(d.Campaign.From); err != nil {
		return nil, fmt.Errorf("build mail: from %q: %w", d.Campaign.From, err)
	}
	to, err := mail.ParseAddress(d.Recipient.Email)
	if err != nil {
		return nil, fmt.Errorf("build mail: recipient %d: %w", d.Recipient.Index, err)
	}
	// net/mail encodes the name, so a name with quotes or line breaks from
	// a CSV can neither break the header nor inject one.
	m.ToMailAddress(&mail.Address{Name: d.Recipient.Name, Address: to.Address})
	m.Subject(parts.subject)
	m.SetDate()
	id := MessageID(d.Campaign.ID, d.Recipient.Index, kind, d.Campaign.From)
	m.SetMessageIDWithValue(id)
	// Postmark hands X-PM-Metadata-* back in its bounce and complaint
	// webhooks, which otherwise name the mail only by Postmark's own id;
	// other servers ignore it. It repeats the Message-ID, nothing more.
	m.SetGenHeader(PostmarkMetadataHeader, id)
	// SendGrid's event webhook names a mail by its smtp-id, which is often
	// SendGrid's own id rather than the Message-ID written here; the
	// unique_args of its SMTP API header come back as fields of every
	// event. SendGrid strips the header; other servers ignore it.
	m.SetGenHeader(SendGridSMTPAPIHeader, sendGridSMTPAPI(id))
	// Precedence: bulk and X-Auto-Response-Suppress keep out-of-office
	// replies from answering thousands of asks.
	m.SetBulk()

	// SetListUnsubscribeOneClick would refuse the http links of the demo;
	// config validation is where https is enforced for real campaigns.
	if u, err := url.Parse(d.UnsubscribeURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("build mail: unsubscribe URL is not an http(s) URL")
	}
	uris := []string{d.UnsubscribeURL}
	if to := d.Campaign.UnsubscribeMailto; to != "" {
		if !strings.HasPrefix(strings.ToLower(to), "mailto:") {
			to = "mailto:" + to
		}
		uris = append(uris, to)
	}
	m.SetListUnsubscribe(uris...)
	m.SetListUnsubscribePost()

	m.SetBodyString(gomail.TypeTextPlain, parts.text)
	if parts.html != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, parts.html)
	}
	return m, nil
}

// renderFor gives what render gives, from the campaign's pre-rendered
// parts when it can (see prerender.go).
func (t *Templates) renderFor(d Data, kind Kind) (rendered, error) {
	if d.Controller == d.Campaign.Controller {
		p := t.prerendered(d, kind)
		if p.ok && (p.sender == d.Sender) {
			vals := [numSlots]string{d.Recipient.Name, d.ConfirmURL, d.ConfirmYesURL, d.ConfirmNoURL, d.UnsubscribeURL}
			if text, html, ok := p.fill(vals); ok {
				return rendered{subject: p.subject, text: text, html: html, locale: p.locale}, nil
			}
		}
	}
	return t.render(d, kind)
}

// PostmarkMetadataHeader carries the Message-ID to Postmark's webhooks as
// Metadata["repermit-id"], and to SES notifications that include the
// original headers (SES writes a Message-ID of its own).
const PostmarkMetadataHeader = "X-PM-Metadata-repermit-id"

// SendGridSMTPAPIHeader is SendGrid's SMTP API header; its unique_args
// carry the Message-ID to SendGrid's event webhook as the event field
// SendGridIDField.
const (
	SendGridSMTPAPIHeader = "X-SMTPAPI"
	SendGridIDField       = "repermit_id"
)

// sendGridSMTPAPI is the X-SMTPAPI value for the mail with Message-ID id:
// {"unique_args":{"repermit_id":"<id>"}}, the id a JSON string.
func sendGridSMTPAPI(id string) string {
	q, err := json.Marshal(id)
	if err != nil {
		// A string always marshals.
		panic("mailer: X-SMTPAPI: " + err.Error())
	}
	return `{"unique_args":{"` + SendGridIDField + `":` + string(q) + `}}`
}

// ParseMessageID reads campaign and recipient index back from a Message-ID
// that MessageID wrote, with or without angle brackets. It proves nothing
// by itself: only a report whose sender was authenticated (an ESP webhook
// with a valid signature) may be matched by it.
func ParseMessageID(id string) (campaign string, index int64, ok bool) {
	id = strings.TrimSpace(id)
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	local, _, found := strings.Cut(id, "@")
	if !found {
		return "", 0, false
	}
	parts := strings.Split(local, ".")
	if len(parts) != 4 || parts[0] != "repermit" || parts[1] == "" {
		return "", 0, false
	}
	n, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return parts[1], n, true
}

// MessageID returns the Message-ID, without angle brackets, of the mail of
// the given kind to recipient index of a campaign, in the domain of from.
func MessageID(campaign string, index int64, kind Kind, from string) string {
	var a *mail.Address
	if p, err := mail.ParseAddress(from); err == nil {
		a = p
	}
	return messageID(campaign, index, kind, a)
}

// messageID is MessageID for a From already parsed (nil if it did not).
func messageID(campaign string, index int64, kind Kind, from *mail.Address) string {
	domain := "repermit.invalid"
	if from != nil {
		if i := strings.LastIndexByte(from.Address, '@'); i >= 0 {
			domain = from.Address[i+1:]
		}
	}
	return "repermit." + campaign + "." + strconv.FormatInt(index, 10) + "." + kind.String() + "@" + domain
}
