package mailer

import (
	"bytes"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
)

// The pool lets go-mail dial, greet, start TLS and authenticate, and runs
// each mail transaction itself on go-mail's connection (smtp.Client.Text,
// exported for extensions like this one), for what issue 17 measured
// (100,000 mails to a discarding sink, 29 Nov 2026):
//
//   - With PIPELINING (RFC 2920, which Postfix, Exim, Exchange and every
//     large provider offer), MAIL FROM, RCPT TO and DATA go out in one
//     write and their replies come back together: two round trips a mail
//     instead of four. With CHUNKING as well (RFC 3030), the message goes
//     along as BDAT: one write and one round trip.
//   - go-mail writes the message through textproto's dot-writer, one
//     bufio.WriteByte per byte of the message (a quarter of the worker's
//     CPU for go-mail's part); here it is dot-stuffed a line at a time,
//     and with BDAT not at all.
//
// The envelope and the MAIL FROM parameters are the ones go-mail would
// give; a server that offers neither extension gets one command at a time.

// transactionError is a mail transaction that failed: the stage it failed
// at and the server's reply, code 0 when there was none (a local refusal,
// a dropped connection, a timeout).
type transactionError struct {
	stage    stage
	code     int
	enhanced string
	err      error
	// broken: the session is out of step and the connection must go.
	broken bool
}

func (e *transactionError) Error() string {
	return fmt.Sprintf("%s: %v", e.stage, e.err)
}

func (e *transactionError) Unwrap() error { return e.err }

func (s stage) String() string {
	switch s {
	case stageLocalMessage:
		return "message"
	case stageLocalRecipient:
		return "recipients"
	case stageSender:
		return "MAIL FROM"
	case stageRecipient:
		return "RCPT TO"
	case stageData:
		return "DATA"
	}
	return "SMTP"
}

// failed wraps err from stage with the reply code and enhanced status code
// it carries, if it is a reply.
func failed(st stage, err error) *transactionError {
	e := &transactionError{stage: st, err: err}
	var te *textproto.Error
	if errors.As(err, &te) {
		e.code, e.enhanced = te.Code, enhancedCode(te.Msg)
	}
	return e
}

// session is what a transaction needs to know of the server, read once per
// connection from its EHLO reply.
type session struct {
	pipelining bool
	chunking   bool // CHUNKING and PIPELINING: the transaction in one write
	eightBit   bool
	mailParams string // appended to MAIL FROM as go-mail would
}

func newSession(ext func(string) (bool, string)) session {
	var s session
	s.pipelining, _ = ext("PIPELINING")
	s.chunking, _ = ext("CHUNKING")
	s.chunking = s.chunking && s.pipelining
	s.eightBit, _ = ext("8BITMIME")
	if s.eightBit {
		s.mailParams += " BODY=8BITMIME"
	}
	if ok, _ := ext("SMTPUTF8"); ok {
		s.mailParams += " SMTPUTF8"
	}
	return s
}

// pending is a reply a transaction waits for: the stage of its command and
// the code (or first digits) that means success.
type pending struct {
	st     stage
	expect int
}

// transact sends w over the connection c: MAIL FROM, one RCPT TO per
// recipient, DATA, the message and its final dot. It returns nil once the
// server accepted the message.
func (p *Pool) transact(c *conn, w *Wire) error {
	if err := c.smtp.UpdateDeadline(p.cfg.timeout()); err != nil {
		return failed(stageSender, err)
	}
	if len(w.To) == 0 {
		return failed(stageLocalRecipient, errors.New("no recipient"))
	}
	for _, a := range append([]string{w.From}, w.To...) {
		if strings.ContainsAny(a, "\r\n") {
			return failed(stageLocalMessage, fmt.Errorf("address %q holds a line break", a))
		}
	}
	if !c.session.eightBit && !sevenBit(w.Data) {
		return failed(stageLocalMessage, errors.New("8bit message but the server does not offer 8BITMIME"))
	}
	buf, _ := p.buffers.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer func() {
		buf.Reset()
		p.buffers.Put(buf)
	}()
	from, rcpts := w.From, w.To

	text := c.smtp.Text
	replies := make([]pending, 0, len(rcpts)+2)
	command := func(st stage, expect int, line string) error {
		text.W.WriteString(line)
		text.W.WriteString("\r\n")
		replies = append(replies, pending{st, expect})
		if c.session.pipelining {
			return nil
		}
		return exchange(text, replies[len(replies)-1:])
	}
	if err := command(stageSender, 250, "MAIL FROM:"+from+c.session.mailParams); err != nil {
		return err
	}
	for _, to := range rcpts {
		if err := command(stageRecipient, 25, "RCPT TO:"+to); err != nil {
			return err
		}
	}
	if c.session.chunking {
		// RFC 3030: BDAT carries its length, so the message needs no
		// dot-stuffing and may follow the envelope in the same write; the
		// server reads the chunk even when it refused the envelope. One
		// round trip a mail. A reused connection found dead at MAIL FROM
		// is redialled and the mail sent again, as with DATA: the server
		// cannot have taken a message it sent no reply to MAIL FROM for,
		// unless it died between queueing it and replying, a window DATA
		// has too (before its reply to the final dot).
		data := w.Data
		if !crlfOnly(data) {
			writeLines(buf, data, false)
			data = buf.Bytes()
		}
		text.W.WriteString("BDAT " + strconv.Itoa(len(data)) + " LAST\r\n")
		text.W.Write(data)
		return exchange(text, append(replies, pending{stageData, 250}))
	}
	writeLines(buf, w.Data, true)
	buf.WriteString(".\r\n")
	if err := command(stageData, 354, "DATA"); err != nil {
		return err
	}
	if c.session.pipelining {
		if err := exchange(text, replies); err != nil {
			return err
		}
	}
	// From here on the server may have accepted the mail: a failure is
	// reported at stageData, which the pool never retries itself.
	if _, err := text.W.Write(buf.Bytes()); err != nil {
		return failed(stageData, err)
	}
	if err := text.W.Flush(); err != nil {
		return failed(stageData, err)
	}
	if _, _, err := text.ReadResponse(250); err != nil {
		return failed(stageData, err)
	}
	return nil
}

// exchange flushes the commands written and reads a reply for each. After
// a refusal it still reads the replies of the pipelined commands behind
// it, so that the session stays in step for an RSET; the first refusal is
// returned.
func exchange(text *textproto.Conn, replies []pending) error {
	if err := text.W.Flush(); err != nil {
		return failed(replies[0].st, err)
	}
	var first *transactionError
	for _, r := range replies {
		_, _, err := text.ReadResponse(r.expect)
		var te *textproto.Error
		switch {
		case err == nil && r.expect == 354 && first != nil:
			// RFC 2920 section 3.1: a server that accepts DATA after
			// refusing every recipient (RFC 5321 says 554 "no valid
			// recipients") waits for a message; the connection cannot
			// be used again without sending one.
			first.broken = true
		case err == nil:
		case !errors.As(err, &te):
			// No reply: the connection is gone.
			if first == nil {
				first = failed(r.st, err)
			}
			first.broken = true
			return first
		case first == nil:
			first = failed(r.st, err)
		}
	}
	if first == nil {
		return nil
	}
	return first
}

// sevenBit reports whether data is 7-bit, which every server takes.
func sevenBit(data []byte) bool {
	for _, b := range data {
		if b >= 0x80 {
			return false
		}
	}
	return true
}

// crlfOnly reports whether every line of data ends in CRLF, as a
// message must (RFC 5322); BDAT sends it unchanged.
func crlfOnly(data []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return i == len(data)
		}
		if i+j == 0 || data[i+j-1] != '\r' {
			return false
		}
		i += j + 1
	}
}

// writeLines appends msg to dst with every line ended by CRLF and, with
// stuff, as the content of DATA (RFC 5321 section 4.5.2): a line that
// starts with a dot gets another. The final ".\r\n" is the caller's. It
// copies a line at a time where textproto's dot-writer goes byte by byte.
func writeLines(dst *bytes.Buffer, msg []byte, stuff bool) {
	dst.Grow(len(msg) + len(msg)/64 + 5)
	if len(msg) == 0 {
		// As textproto's dot-writer: an empty line, not none.
		dst.WriteString("\r\n")
	}
	for len(msg) > 0 {
		line := msg
		var rest []byte
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, rest = msg[:i], msg[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if stuff && len(line) > 0 && line[0] == '.' {
			dst.WriteByte('.')
		}
		dst.Write(line)
		dst.WriteString("\r\n")
		msg = rest
	}
}
