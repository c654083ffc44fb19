package repermit

import (
	"regexp"
)

// addressPattern matches anything shaped like an e-mail address: a run of
// characters that may stand in a local part, '@', and a domain. It is
// deliberately wide (it also takes user@host of a URL): what it removes
// is only ever a diagnostic.
var addressPattern = regexp.MustCompile(`[^\s<>()\[\]{}"',;:@\\]+@[^\s<>()\[\]{}"',;:@\\]+`)

// AddressPlaceholder replaces an address that ScrubAddresses removed.
const AddressPlaceholder = "<address>"

// ScrubAddresses replaces every e-mail address in s with
// AddressPlaceholder. SMTP replies quote the recipient ("550 5.1.1
// <a@example.com>: no such user") and go-mail lists the affected
// recipients in its errors; such text must not outlive an erasure in a
// task error, a log line or anything else stored.
func ScrubAddresses(s string) string {
	if !containsAt(s) {
		return s
	}
	return addressPattern.ReplaceAllString(s, AddressPlaceholder)
}

func containsAt(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '@' {
			return true
		}
	}
	return false
}

// ScrubbedError is an error whose message has no e-mail address in it; it
// unwraps to the original, so errors.Is and errors.As (asynq.SkipRetry, an
// SMTP error's class) still see through it.
type ScrubbedError struct{ Err error }

func (e ScrubbedError) Error() string { return ScrubAddresses(e.Err.Error()) }
func (e ScrubbedError) Unwrap() error { return e.Err }

// Scrub returns err with its message scrubbed of addresses; nil for nil.
func Scrub(err error) error {
	if err == nil {
		return nil
	}
	return ScrubbedError{err}
}
