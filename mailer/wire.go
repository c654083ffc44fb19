package mailer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Wire is a mail as the SMTP transaction carries it.
type Wire struct {
	// From is the envelope sender and To the envelope recipients, each
	// in angle brackets as MAIL FROM and RCPT TO take them.
	From string
	To   []string
	// Data is the message: header and body, CRLF line ends, not
	// dot-stuffed.
	Data []byte
}

// BuildWire renders the mail Build renders, straight into the bytes the
// SMTP transaction sends, with returnPath (without brackets) as the
// envelope sender if it is set. With a buf, the message is written into
// it (after a Reset) and the Wire's Data is valid until buf is used
// again: a sender of one mail after another reuses one buffer.
//
// Build makes a go-mail Msg, which the pool then writes out: in issue 17's
// profile of the worker the Msg and its writing cost about 55 µs a mail,
// a quarter of the worker's CPU. BuildWire writes the same header fields
// and MIME parts directly (TestBuildWireGivesWhatBuildGives compares both
// field by field and part by part); where the pre-rendered fast path does
// not apply (a campaign's own templates), it falls back to Build.
func (t *Templates) BuildWire(d Data, kind Kind, returnPath string, buf *bytes.Buffer) (*Wire, error) {
	if d.Campaign == nil || d.Recipient == nil {
		return nil, errors.New("build mail: campaign and recipient are required")
	}
	if d.ConfirmURL == "" || d.UnsubscribeURL == "" {
		return nil, errors.New("build mail: confirm and unsubscribe URLs are required")
	}
	p, vals, ok := t.prefilled(d, kind)
	if !ok {
		return t.wireFromMsg(d, kind, returnPath)
	}
	to, err := mail.ParseAddress(d.Recipient.Email)
	if err != nil {
		return nil, fmt.Errorf("build mail: recipient %d: %w", d.Recipient.Index, err)
	}
	if u, err := url.Parse(d.UnsubscribeURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("build mail: unsubscribe URL is not an http(s) URL")
	}
	envFrom := p.from.Address
	if returnPath != "" {
		envFrom = returnPath
	}
	id := messageID(d.Campaign.ID, d.Recipient.Index, kind, p.from)

	b := buf
	if b == nil {
		b = new(bytes.Buffer)
	}
	b.Reset()
	b.Grow(p.textSize + p.htmlSize + (p.textSize+p.htmlSize)/4 + 2048)
	header := func(name, value string) { writeField(b, name, value) }
	// The fields and their order are go-mail's.
	header("Date", time.Now().Format(time.RFC1123Z))
	header("MIME-Version", "1.0")
	header("Message-ID", "<"+id+">")
	header("Precedence", "bulk")
	header("Subject", p.subjectField)
	header("X-Auto-Response-Suppress", "All")
	header(PostmarkMetadataHeader, id)
	header(SendGridSMTPAPIHeader, sendGridSMTPAPI(id))
	unsub := "<" + d.UnsubscribeURL + ">"
	if to := d.Campaign.UnsubscribeMailto; to != "" {
		if !strings.HasPrefix(strings.ToLower(to), "mailto:") {
			to = "mailto:" + to
		}
		unsub += ", <" + to + ">"
	}
	header("List-Unsubscribe", unsub)
	header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	header("From", p.from.String())
	// net/mail encodes the name, so a name with quotes or line breaks from
	// a CSV can neither break the header nor inject one.
	header("To", (&mail.Address{Name: d.Recipient.Name, Address: to.Address}).String())
	part := textproto.MIMEHeader{
		"Content-Transfer-Encoding": {"quoted-printable"},
		"Content-Type":              {"text/plain; charset=UTF-8"},
	}
	if p.html == nil {
		for _, k := range []string{"Content-Transfer-Encoding", "Content-Type"} {
			header(k, part.Get(k))
		}
		b.WriteString("\r\n")
		if err := writeSegments(b, p.textQP, &vals, true); err != nil {
			return nil, err
		}
	} else {
		mw := multipart.NewWriter(b)
		header("Content-Type", "multipart/alternative; boundary="+mw.Boundary())
		b.WriteString("\r\n")
		for _, body := range []struct {
			typ  string
			segs []qpSegment
			text bool
		}{{"text/plain; charset=UTF-8", p.textQP, true}, {"text/html; charset=UTF-8", p.htmlQP, false}} {
			part.Set("Content-Type", body.typ)
			w, err := mw.CreatePart(part)
			if err != nil {
				return nil, err
			}
			if err := writeSegments(w, body.segs, &vals, body.text); err != nil {
				return nil, err
			}
		}
		if err := mw.Close(); err != nil {
			return nil, err
		}
	}
	return &Wire{From: "<" + envFrom + ">", To: []string{"<" + to.Address + ">"}, Data: b.Bytes()}, nil
}

// maxLine is where header fields are folded (RFC 5322 section 2.1.1: 78
// characters a line should not exceed; 998 it must not).
const maxLine = 78

// writeField writes a header field, folded at spaces so that its lines
// stay within maxLine where a space allows: a long recipient name or
// subject is several encoded-words, a space between each, as go-mail
// folds them too.
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(":")
	width := len(name) + 1
	for value != "" {
		word, rest, _ := strings.Cut(value, " ")
		if width > 1 && width+1+len(word) > maxLine {
			b.WriteString("\r\n")
			width = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		width += 1 + len(word)
		value = rest
	}
	b.WriteString("\r\n")
}

// qpSegment is a run of whole lines of a part encoded once (enc), or one
// line with slots, encoded per mail.
type qpSegment struct {
	enc []byte
	dyn []piece
}

// encodeSegments encodes the static segments of a part. Quoted-printable
// works a line at a time (a line's soft breaks and its trailing white
// space depend on that line alone), so encoding the lines apart gives
// what encoding the part at once gives; TestBuildWireGivesWhatBuildGives
// compares the bytes with go-mail's.
func encodeSegments(segs []segment) []qpSegment {
	out := make([]qpSegment, len(segs))
	for i, s := range segs {
		if s.dyn != nil {
			out[i].dyn = s.dyn
			continue
		}
		var b bytes.Buffer
		qw := quotedprintable.NewWriter(&b)
		qw.Write([]byte(s.static))
		qw.Close()
		out[i].enc = b.Bytes()
	}
	return out
}

// writeSegments writes a part's segments with vals in its slots: in the
// text part as fill does (the line wrapped once filled), in the HTML part
// escaped.
func writeSegments(w io.Writer, segs []qpSegment, vals *[numSlots]string, text bool) error {
	var line strings.Builder
	for _, s := range segs {
		if s.dyn == nil {
			if _, err := w.Write(s.enc); err != nil {
				return err
			}
			continue
		}
		line.Reset()
		for _, pc := range s.dyn {
			switch {
			case pc.slot < 0:
				line.WriteString(pc.lit)
			case text:
				line.WriteString(vals[pc.slot])
			default:
				escapeHTML(&line, vals[pc.slot])
			}
		}
		l := line.String()
		if text {
			l = Wrap(l, wrapWidth)
		}
		qw := quotedprintable.NewWriter(w)
		if _, err := io.WriteString(qw, l); err != nil {
			return err
		}
		if err := qw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// wireFromMsg is BuildWire by way of Build.
func (t *Templates) wireFromMsg(d Data, kind Kind, returnPath string) (*Wire, error) {
	m, err := t.Build(d, kind)
	if err != nil {
		return nil, err
	}
	if returnPath != "" {
		if err := m.EnvelopeFrom(returnPath); err != nil {
			return nil, fmt.Errorf("return path: %w", err)
		}
	}
	return WireOf(m)
}

// WireOf renders a go-mail Msg for the SMTP transaction.
func WireOf(m *gomail.Msg) (*Wire, error) {
	from, err := m.GetSender(false)
	if err != nil {
		return nil, &transactionError{stage: stageLocalMessage, err: err}
	}
	rcpts, err := m.GetRecipients()
	if err != nil {
		return nil, &transactionError{stage: stageLocalRecipient, err: err}
	}
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		return nil, &transactionError{stage: stageLocalMessage, err: fmt.Errorf("render: %w", err)}
	}
	return &Wire{From: from, To: rcpts, Data: b.Bytes()}, nil
}

// prefilled gives the pre-rendered parts of d's mail and the values of
// their slots, when the fast path applies.
func (t *Templates) prefilled(d Data, kind Kind) (p *prerendered, vals [numSlots]string, ok bool) {
	if d.Controller != d.Campaign.Controller {
		return nil, vals, false
	}
	p = t.prerendered(d, kind)
	if !p.ok || p.sender != d.Sender || p.from == nil {
		return nil, vals, false
	}
	vals = [numSlots]string{d.Recipient.Name, d.ConfirmURL, d.ConfirmYesURL, d.ConfirmNoURL, d.UnsubscribeURL}
	if p.html != nil {
		// As fill: a link html/template would change takes the slow way.
		for i := slotConfirm; i < numSlots; i++ {
			if !plainURL(vals[i]) {
				return nil, vals, false
			}
		}
	}
	return p, vals, true
}

// subjectField is the Subject header's value as go-mail encodes it,
// unfolded.
func subjectField(s string) string { return mime.QEncoding.Encode("UTF-8", s) }
