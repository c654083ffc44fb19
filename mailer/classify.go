package mailer

import (
	"context"
	"errors"
	"net/textproto"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// Class is what a caller should do after a send.
type Class int

const (
	// OK: the server accepted the mail.
	OK Class = iota
	// Temporary: a 4xx reply, a network error or a dropped connection;
	// nothing says the mail cannot go through later, so retry with backoff.
	Temporary
	// RecipientRejected: a permanent refusal of the address (unknown user,
	// disabled or full mailbox); mark the recipient bounced, never retry.
	RecipientRejected
	// MessageRejected: a permanent refusal of the message or the sender
	// (policy, spam, size, authentication); every other recipient would
	// fare the same, so pause the campaign for a human to look.
	MessageRejected
)

func (c Class) String() string {
	switch c {
	case OK:
		return "ok"
	case Temporary:
		return "temporary"
	case RecipientRejected:
		return "recipient-rejected"
	case MessageRejected:
		return "message-rejected"
	}
	return "unknown"
}

// Classify tells from an error returned by Pool.Send what to do next.
// Errors it does not recognise are Temporary: go-mail reports a dropped
// connection without a reply code, and retrying is the only safe answer to
// not knowing.
func Classify(err error) Class {
	if err == nil {
		return OK
	}
	code, enhanced, st := replyOf(err)
	switch {
	case code >= 500 && code < 600:
		return classifyPermanent(code, enhanced, st)
	case code == 0 && st == stageLocalMessage:
		// go-mail refused the message before talking to the server: a bad
		// sender, or 8bit content the server cannot take.
		return MessageRejected
	case code == 0 && st == stageLocalRecipient:
		return RecipientRejected
	}
	return Temporary
}

// Throttled reports whether the server asked us to slow down: a 421 (the
// server is closing the connection, often for too many connections or mails)
// or a 4xx with an enhanced code 4.7.x (rate limits, greylisting). Callers
// should delay the recipient's domain, not only the one mail.
func Throttled(err error) bool {
	if err == nil {
		return false
	}
	code, enhanced, _ := replyOf(err)
	return code == 421 || (code >= 400 && code < 500 && strings.HasPrefix(enhanced, "4.7."))
}

// stage is the step of the SMTP dialogue an error came from.
type stage int

const (
	stageOther          stage = iota // dialling: greeting, EHLO, STARTTLS, AUTH
	stageLocalMessage                // go-mail refused the message itself
	stageLocalRecipient              // go-mail found no valid recipient
	stageSender                      // MAIL FROM
	stageRecipient                   // RCPT TO
	stageData                        // DATA, the content or its final dot
)

// replyOf extracts the reply code, the enhanced status code and the stage
// from a go-mail SendError, or from the textproto.Error go-mail wraps for
// failures while dialling (greeting, EHLO, STARTTLS, AUTH).
func replyOf(err error) (code int, enhanced string, st stage) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, "", stageOther
	}
	var tx *transactionError
	if errors.As(err, &tx) {
		return tx.code, tx.enhanced, tx.stage
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		switch se.Reason {
		case gomail.ErrGetSender, gomail.ErrNoUnencoded:
			st = stageLocalMessage
		case gomail.ErrGetRcpts:
			st = stageLocalRecipient
		case gomail.ErrSMTPMailFrom:
			st = stageSender
		case gomail.ErrSMTPRcptTo:
			st = stageRecipient
		case gomail.ErrSMTPData, gomail.ErrSMTPDataClose, gomail.ErrWriteContent:
			st = stageData
		}
		return se.ErrorCode(), se.EnhancedStatusCode(), st
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, enhancedCode(te.Msg), stageOther
	}
	return 0, "", stageOther
}

// enhancedCode returns the leading RFC 3463 code of a reply text, if any.
func enhancedCode(msg string) string {
	f, _, _ := strings.Cut(strings.TrimSpace(msg), " ")
	parts := strings.Split(f, ".")
	if len(parts) != 3 || (parts[0] != "4" && parts[0] != "5" && parts[0] != "2") {
		return ""
	}
	for _, p := range parts[1:] {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return ""
		}
	}
	return f
}

// classifyPermanent sorts a 5xx reply. Mails carry one recipient each, so a
// mailbox problem reported only at the end of DATA is still that recipient's.
func classifyPermanent(code int, enhanced string, st stage) Class {
	var subject, detail string
	if parts := strings.Split(enhanced, "."); len(parts) == 3 {
		subject, detail = parts[1], parts[2]
	}
	switch st {
	case stageRecipient:
		switch {
		case subject == "7", subject == "3", subject == "2" && detail == "3":
			// Policy (a blocked sender or IP), system limits, message size:
			// nothing about this address.
			return MessageRejected
		case subject == "1", subject == "2", subject == "4":
			// Address, mailbox and routing status of the recipient.
			return RecipientRejected
		}
		switch code {
		case 550, 551, 553:
			return RecipientRejected
		case 552:
			// RFC 5321 section 4.5.3.1.10: 552 at RCPT historically means
			// too many recipients and is to be treated as temporary.
			return Temporary
		}
	case stageData:
		if subject == "1" || subject == "2" && detail != "3" {
			return RecipientRejected
		}
	}
	return MessageRejected
}
