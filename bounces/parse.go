// Package bounces reads the mail that comes back after a campaign mail was
// accepted: delivery status notifications (RFC 3464) and abuse feedback
// reports (ARF, RFC 5965) from an IMAP mailbox, matched to the recipient by
// the signed VERP Return-Path (or, for a complaint, by the signed links of
// the original mail), never by the free text of a report.
package bounces

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/textproto"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // reports in legacy charsets
)

// Kind is what a message in the bounce mailbox is.
type Kind int

const (
	Unknown   Kind = iota // not a report this package understands: left alone
	AutoReply             // an out-of-office or other RFC 3834 auto-reply: left alone
	Delivered             // a DSN that reports success or a delay without a 4.x.x status: nothing to do
	Hard                  // a DSN with a permanent failure, 5.x.x
	Soft                  // a DSN with a transient failure, 4.x.x
	Complaint             // an ARF report of Feedback-Type abuse
)

func (k Kind) String() string {
	return [...]string{"unknown", "auto-reply", "delivered", "hard bounce", "soft bounce", "complaint"}[k]
}

// Report is what Parse found in one message.
type Report struct {
	Kind Kind
	// Source is "dsn" or "arf".
	Source string
	// Status is the DSN status code ("5.1.1") or the ARF Feedback-Type.
	Status string
	// Addresses are the addresses the report came to or names as the
	// original sender: where a VERP Return-Path shows up. Unverified.
	Addresses []string
	// Links are the List-Unsubscribe URLs of the original mail quoted in
	// the report. Unverified.
	Links []string
	// MessageID is the Message-ID of the original mail quoted in the
	// report, "" if it quotes none. Unverified.
	MessageID string
}

// Parse classifies a raw message. An error means the message is not even
// MIME; callers leave such a message alone too.
func Parse(raw []byte) (Report, error) {
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return Report{}, fmt.Errorf("parse report: %w", err)
	}
	var r Report
	for _, key := range []string{"Delivered-To", "X-Original-To", "Envelope-To", "To"} {
		r.Addresses = append(r.Addresses, addresses(e.Header.Values(key))...)
	}
	// Postfix marks its DSNs Auto-Submitted: auto-replied too, so the
	// report types are looked at first.
	t, params, _ := e.Header.ContentType()
	if t != "multipart/report" {
		if autoReply(e.Header) {
			r.Kind = AutoReply
		}
		return r, nil
	}
	reportType := strings.ToLower(params["report-type"])
	mr := e.MultipartReader()
	if mr == nil {
		return r, nil
	}
	var dsn, arf textproto.MIMEHeader
	var dsnRcpts []textproto.MIMEHeader
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if message.IsUnknownCharset(err) || message.IsUnknownEncoding(err) {
				continue
			}
			return Report{}, fmt.Errorf("parse report: %w", err)
		}
		pt, _, _ := p.Header.ContentType()
		switch pt {
		case "message/delivery-status", "message/global-delivery-status":
			groups, err := fieldGroups(p.Body)
			if err != nil {
				return Report{}, fmt.Errorf("parse delivery status: %w", err)
			}
			if len(groups) > 0 {
				dsn, dsnRcpts = groups[0], groups[1:]
			}
		case "message/feedback-report":
			groups, err := fieldGroups(p.Body)
			if err != nil {
				return Report{}, fmt.Errorf("parse feedback report: %w", err)
			}
			if len(groups) > 0 {
				arf = groups[0]
			}
		case "message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers", "message/global-headers":
			// The original mail, or its header: its Return-Path and
			// List-Unsubscribe carry our signed tokens.
			h, err := textproto.NewReader(bufio.NewReader(p.Body)).ReadMIMEHeader()
			if err != nil && len(h) == 0 {
				continue
			}
			r.Addresses = append(r.Addresses, addresses(h.Values("Return-Path"))...)
			if r.MessageID == "" {
				r.MessageID = strings.TrimSpace(h.Get("Message-Id"))
			}
			for _, v := range h.Values("List-Unsubscribe") {
				r.Links = append(r.Links, angleList(v)...)
			}
		}
	}
	switch {
	case reportType == "delivery-status" && dsn != nil:
		r.Source = "dsn"
		r.Kind, r.Status = dsnKind(dsnRcpts)
	case reportType == "feedback-report" && arf != nil:
		r.Source = "arf"
		r.Status = strings.ToLower(strings.TrimSpace(arf.Get("Feedback-Type")))
		if r.Status == "abuse" {
			r.Kind = Complaint
		}
	}
	return r, nil
}

// dsnKind sums up the per-recipient fields of a DSN: a campaign mail has
// one recipient, so any failure with a 5 class is hard, else any 4 class
// failure or delay is soft.
func dsnKind(rcpts []textproto.MIMEHeader) (Kind, string) {
	kind, status := Unknown, ""
	for _, f := range rcpts {
		action := strings.ToLower(strings.TrimSpace(f.Get("Action")))
		code := strings.TrimSpace(f.Get("Status"))
		if i := strings.IndexAny(code, " \t("); i >= 0 {
			code = code[:i]
		}
		switch {
		case action == "failed" && strings.HasPrefix(code, "5."):
			return Hard, code
		case (action == "failed" || action == "delayed") && strings.HasPrefix(code, "4."):
			kind, status = Soft, code
		case kind == Unknown && (action == "delivered" || action == "relayed" || action == "expanded" || action == "delayed"):
			kind, status = Delivered, code
		}
	}
	return kind, status
}

// fieldGroups reads the blank-line separated groups of header fields of a
// delivery-status or feedback-report body.
func fieldGroups(body io.Reader) ([]textproto.MIMEHeader, error) {
	b, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return nil, err
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	var groups []textproto.MIMEHeader
	for _, chunk := range bytes.Split(b, []byte("\n\n")) {
		chunk = bytes.TrimSpace(chunk)
		if len(chunk) == 0 {
			continue
		}
		h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(chunk, '\n', '\n')))).ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			return nil, err
		}
		groups = append(groups, h)
	}
	return groups, nil
}

// autoReply reports an RFC 3834 auto-reply or a common vacation marker.
func autoReply(h message.Header) bool {
	if v := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); v != "" && v != "no" {
		// auto-generated is what other robots say; only replies count.
		if strings.HasPrefix(v, "auto-replied") {
			return true
		}
	}
	return h.Get("X-Autoreply") != "" || h.Get("X-Autorespond") != ""
}

// addresses extracts the addresses of header values, also of the bare
// "<addr>" form of Return-Path.
func addresses(values []string) []string {
	var out []string
	for _, v := range values {
		if list, err := mail.ParseAddressList(v); err == nil {
			for _, a := range list {
				out = append(out, a.Address)
			}
			continue
		}
		if a := strings.Trim(strings.TrimSpace(v), "<>"); strings.Contains(a, "@") {
			out = append(out, a)
		}
	}
	return out
}

// angleList splits "<u1>, <u2>" into its URIs.
func angleList(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if strings.HasPrefix(part, "<") && strings.HasSuffix(part, ">") {
			out = append(out, part[1:len(part)-1])
		}
	}
	return out
}
