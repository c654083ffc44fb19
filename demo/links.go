package demo

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
)

// Links are what a recipient can act on in one campaign mail.
type Links struct {
	To        string // the recipient address
	MessageID string // without angle brackets
	// Confirm is the landing page; Yes and No preselect an answer there.
	Confirm, Yes, No string
	// Unsubscribe is the https target of List-Unsubscribe, OneClick whether
	// List-Unsubscribe-Post announces RFC 8058.
	Unsubscribe string
	OneClick    bool
	Text        string // the decoded text part
}

// Reminder reports whether the mail is a reminder rather than the initial
// ask; the Message-ID names its kind (mailer.MessageID).
func (l Links) Reminder() bool { return strings.Contains(l.MessageID, ".reminder") }

var confirmRE = regexp.MustCompile(`https?://[^\s<>"]+/c/[A-Za-z0-9_-]+(\?answer=(yes|no))?`)

// ParseLinks reads a raw RFC 5322 message as a mail client would: the
// List-Unsubscribe headers, and the confirm links of the text part after
// its transfer encoding is undone.
func ParseLinks(raw []byte) (Links, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Links{}, fmt.Errorf("read message: %w", err)
	}
	var l Links
	if to, err := mail.ParseAddress(msg.Header.Get("To")); err == nil {
		l.To = to.Address
	}
	l.MessageID = strings.Trim(msg.Header.Get("Message-Id"), "<> ")
	for _, part := range strings.Split(msg.Header.Get("List-Unsubscribe"), ",") {
		u := strings.Trim(strings.TrimSpace(part), "<>")
		if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
			l.Unsubscribe = u
		}
	}
	l.OneClick = strings.EqualFold(strings.TrimSpace(msg.Header.Get("List-Unsubscribe-Post")), "List-Unsubscribe=One-Click")
	text, err := textPart(msg.Header, msg.Body)
	if err != nil {
		return l, err
	}
	l.Text = text
	for _, m := range confirmRE.FindAllStringSubmatch(text, -1) {
		switch m[2] {
		case "yes":
			l.Yes = m[0]
		case "no":
			l.No = m[0]
		default:
			l.Confirm = m[0]
		}
	}
	if l.Confirm == "" {
		// The default templates link only "yes" and "no"; the landing page
		// is the same URL without the preselection.
		for _, u := range []string{l.Yes, l.No} {
			if i := strings.IndexByte(u, '?'); i > 0 {
				l.Confirm = u[:i]
				break
			}
		}
	}
	if l.Confirm == "" {
		return l, errors.New("no confirm link in the text part")
	}
	return l, nil
}

// header is what textPart needs of mail.Header and of a MIME part's header.
type header interface{ Get(string) string }

// textPart returns the decoded text/plain part of a body with the given
// headers, looking inside multipart containers.
func textPart(h header, body io.Reader) (string, error) {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", fmt.Errorf("content type %q: %w", ct, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return "", errors.New("no text/plain part")
			}
			if err != nil {
				return "", fmt.Errorf("multipart: %w", err)
			}
			if s, err := textPart(p.Header, p); err == nil {
				return s, nil
			}
		}
	}
	if mt != "text/plain" {
		return "", fmt.Errorf("part is %s", mt)
	}
	var r io.Reader = body
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, newlineStripper{body})
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("decode text part: %w", err)
	}
	return string(b), nil
}

// newlineStripper drops the line breaks of a base64 body, which the strict
// decoder would refuse.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	for {
		c, err := n.r.Read(p)
		j := 0
		for _, b := range p[:c] {
			if b != '\r' && b != '\n' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
