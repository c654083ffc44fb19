package repermit

import (
	"errors"
	"fmt"
)

// Application error codes. Callers branch on the code, not on the message;
// cmd/repermit maps them to exit codes and web to HTTP statuses, each in one
// place.
const (
	ECONFLICT    = "conflict"    // e.g. a campaign id that exists
	EINTERNAL    = "internal"    // a bug or an unexpected failure
	EINVALID     = "invalid"     // bad input: config, file, form
	ENOTFOUND    = "not_found"   // unknown campaign, forged token
	EGONE        = "gone"        // past the deadline, expired recipient
	EUNAVAILABLE = "unavailable" // Redis or SMTP not answering
)

// Error is an application error whose message is safe to show to the user.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf builds an application error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first application error in err's chain,
// EINTERNAL for any other error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of an application error, or
// a generic text for internal errors, whose details belong in the log only.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
