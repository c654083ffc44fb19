package mailer

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/repermit/repermit/smtpsink"
)

func reply(code int, enhanced smtp.EnhancedCode) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: "test reply"}
}

// TestClassifyRealReplies sends through the pool to a sink told to answer
// each case, so the errors are the ones go-mail really returns.
func TestClassifyRealReplies(t *testing.T) {
	tests := []struct {
		name      string
		opts      smtpsink.Options
		want      Class
		throttled bool
	}{
		{"accepted", smtpsink.Options{}, OK, false},
		{"451 at RCPT", smtpsink.Options{TempFailRate: 1}, Temporary, false},
		{"421 at RCPT", rejectRcpt(reply(421, smtp.EnhancedCode{4, 7, 0})), Temporary, true},
		{"450 4.7.1 rate limit", rejectRcpt(reply(450, smtp.EnhancedCode{4, 7, 1})), Temporary, true},
		{"452 4.2.2 mailbox full for now", rejectRcpt(reply(452, smtp.EnhancedCode{4, 2, 2})), Temporary, false},
		{"550 5.1.1 unknown user", smtpsink.Options{PermFail: map[string]bool{"ada@example.org": true}}, RecipientRejected, false},
		{"550 at RCPT without detail", rejectRcpt(reply(550, smtp.EnhancedCodeNotSet)), RecipientRejected, false},
		{"553 5.1.3 bad address", rejectRcpt(reply(553, smtp.EnhancedCode{5, 1, 3})), RecipientRejected, false},
		{"550 5.4.1 access denied (Microsoft)", rejectRcpt(reply(550, smtp.EnhancedCode{5, 4, 1})), RecipientRejected, false},
		{"552 at RCPT", rejectRcpt(reply(552, smtp.EnhancedCodeNotSet)), Temporary, false},
		{"554 5.7.1 at RCPT: blocked sender", rejectRcpt(reply(554, smtp.EnhancedCode{5, 7, 1})), MessageRejected, false},
		{"554 5.7.1 on DATA", rejectData(reply(554, smtp.EnhancedCode{5, 7, 1})), MessageRejected, false},
		{"552 5.3.4 too big", rejectData(reply(552, smtp.EnhancedCode{5, 3, 4})), MessageRejected, false},
		{"552 5.2.3 too long", rejectData(reply(552, smtp.EnhancedCode{5, 2, 3})), MessageRejected, false},
		{"552 5.2.2 full, after DATA", rejectData(reply(552, smtp.EnhancedCode{5, 2, 2})), RecipientRejected, false},
		{"451 4.7.1 greylisted after DATA", rejectData(reply(451, smtp.EnhancedCode{4, 7, 1})), Temporary, true},
		{"dropped connection", smtpsink.Options{Drop: func(string, int) bool { return true }}, Temporary, false},
	}
	tpl := loadTemplates(t, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSink(t, tt.opts)
			p := sinkPool(t, s, 1)
			m, err := tpl.Build(testData(testCampaign(), testRecipient(1, "en")), Initial)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Send(t.Context(), m)
			if got := Classify(err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", err, got, tt.want)
			}
			if got := Throttled(err); got != tt.throttled {
				t.Errorf("Throttled(%v) = %v, want %v", err, got, tt.throttled)
			}
			if tt.want == OK && s.Count() != 1 {
				t.Errorf("sink accepted %d mails", s.Count())
			}
		})
	}
}

func rejectRcpt(r *smtp.SMTPError) smtpsink.Options {
	return smtpsink.Options{Reject: func(string, int) *smtp.SMTPError { return r }}
}

func rejectData(r *smtp.SMTPError) smtpsink.Options {
	return smtpsink.Options{RejectData: func(string, []string) *smtp.SMTPError { return r }}
}

func TestClassifyOtherErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, OK},
		{"cancelled", fmt.Errorf("send: %w", context.Canceled), Temporary},
		{"auth failed while dialling", fmt.Errorf("dial: SMTP AUTH failed: %w", &textproto.Error{Code: 535, Msg: "5.7.8 Authentication credentials invalid"}), MessageRejected},
		{"greeting 421", fmt.Errorf("dial: %w", &textproto.Error{Code: 421, Msg: "4.3.2 try later"}), Temporary},
		{"unknown", errors.New("something odd"), Temporary},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify = %v, want %v", tt.name, got, tt.want)
		}
	}
	if !Throttled(&textproto.Error{Code: 421, Msg: "4.7.0 too many connections"}) {
		t.Error("a 421 greeting is not Throttled")
	}
}

func TestEnhancedCode(t *testing.T) {
	tests := map[string]string{
		"5.7.8 Authentication failed": "5.7.8",
		"4.3.2 later":                 "4.3.2",
		"Authentication failed":       "",
		"5.7 x":                       "",
		"5.x.1 y":                     "",
	}
	for in, want := range tests {
		if got := enhancedCode(in); got != want {
			t.Errorf("enhancedCode(%q) = %q, want %q", in, got, want)
		}
	}
}
