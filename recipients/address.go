package recipients

import (
	"crypto/sha256"
	"encoding/hex"
	"net/mail"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/repermit/repermit"
)

// Limits of RFC 5321 (4.5.3.1); longer addresses are undeliverable.
const (
	maxAddressLen = 254
	maxLocalLen   = 64
	maxLabelLen   = 63
)

// Normalize returns the canonical form of an address, under which it is
// deduplicated, suppressed and hashed: trimmed, lower-cased, with an
// internationalised domain in punycode. Only a bare addr-spec is accepted,
// no display name and no angle brackets. The error is an EINVALID
// *repermit.Error whose message names the address and the reason.
func Normalize(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	if a == "" {
		return "", repermit.Errorf(repermit.EINVALID, "empty address")
	}
	if !utf8.ValidString(a) {
		return "", invalid(addr, "not valid UTF-8")
	}
	if strings.ContainsAny(a, "<>") {
		return "", invalid(addr, "give the bare address without a name or <>")
	}
	at := strings.LastIndexByte(a, '@')
	switch {
	case at < 0:
		return "", invalid(addr, "missing @")
	case at == 0:
		return "", invalid(addr, "missing the part before @")
	case at == len(a)-1:
		return "", invalid(addr, "missing the domain after @")
	}
	local := strings.ToLower(a[:at])
	if len(local) > maxLocalLen {
		return "", invalid(addr, "the part before @ is longer than 64 characters")
	}
	domain, reason := normalizeDomain(a[at+1:])
	if reason != "" {
		return "", invalid(addr, reason)
	}
	out := a
	if local != a[:at] || domain != a[at+1:] {
		out = local + "@" + domain
	}
	if len(out) > maxAddressLen {
		return "", invalid(addr, "longer than 254 characters")
	}
	// Plain dot-atoms, nearly every real address, are valid for net/mail
	// by construction; parsing them anyway would cost most of the time of
	// a million-row import.
	if !isDotAtom(local) {
		p, err := mail.ParseAddress(out)
		if err != nil {
			return "", invalid(addr, strings.TrimPrefix(err.Error(), "mail: "))
		}
		if p.Name != "" || p.Address != out {
			return "", invalid(addr, "not a bare address (quoted local parts and comments are not supported)")
		}
	}
	return out, nil
}

func invalid(addr, reason string) error {
	return repermit.Errorf(repermit.EINVALID, "invalid address %q: %s", addr, reason)
}

// normalizeDomain returns the lower-case ASCII form of d, or a reason why it
// cannot receive mail.
func normalizeDomain(d string) (string, string) {
	if !isASCII(d) || strings.Contains(d, "xn--") || strings.Contains(d, "XN--") {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", "invalid international domain: " + strings.TrimPrefix(err.Error(), "idna: ")
		}
		d = a
	}
	d = strings.ToLower(d)
	if reason := checkHostname(d); reason != "" {
		return "", reason
	}
	return d, ""
}

// checkHostname accepts a lower-case ASCII host name of at least two labels
// of letters, digits and inner hyphens. Address literals ([1.2.3.4]) and
// bare TLDs are refused: no mailing list legitimately holds them.
func checkHostname(d string) string {
	if strings.HasPrefix(d, "[") {
		return "address literals are not supported"
	}
	if !strings.Contains(d, ".") {
		return "the domain " + quote(d) + " has no dot"
	}
	labels := 0
	allDigits := false
	for label := range strings.SplitSeq(d, ".") {
		labels++
		switch {
		case label == "":
			return "empty label in domain " + quote(d)
		case len(label) > maxLabelLen:
			return "a label of the domain is longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "a label of the domain starts or ends with '-'"
		}
		allDigits = true
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c == '-':
				allDigits = false
			default:
				return "invalid character " + quote(string(rune(c))) + " in domain"
			}
		}
	}
	if allDigits {
		return "the domain " + quote(d) + " is a number, not a host name"
	}
	return ""
}

func quote(s string) string { return `"` + s + `"` }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// isDotAtom reports whether local is an RFC 5322 dot-atom of lower-case
// ASCII characters.
func isDotAtom(local string) bool {
	if local == "" || local[0] == '.' || local[len(local)-1] == '.' {
		return false
	}
	prevDot := false
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c == '.' {
			if prevDot {
				return false
			}
			prevDot = true
			continue
		}
		prevDot = false
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
			return false
		}
	}
	return true
}

// Hash returns the lower-case hex SHA-256 of a normalized address: the only
// trace of an address that stays on the suppression list after erasure.
func Hash(normalized string) string {
	sum := sha256.Sum256([]byte(normalized))
	return hex.EncodeToString(sum[:])
}

// isHash reports whether s is a 64-digit hex SHA-256 in either case.
func isHash(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// normalizeLocale returns a BCP 47-like tag in canonical case ("de-AT",
// "zh-Hant-TW"), accepting "_" as separator, or "" when s does not look
// like a language tag.
func normalizeLocale(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 35 {
		return ""
	}
	var buf [35]byte
	b := buf[:0]
	for i, part := 0, 0; i < len(s); part++ {
		j := i
		for j < len(s) && s[j] != '-' && s[j] != '_' {
			j++
		}
		sub := s[i:j]
		if !isAlnum(sub) || len(sub) > 8 {
			return ""
		}
		if part > 0 {
			b = append(b, '-')
		}
		switch {
		case part == 0:
			if len(sub) < 2 || len(sub) > 3 || !isAlpha(sub) {
				return ""
			}
			b = appendLower(b, sub)
		case len(sub) == 4 && isAlpha(sub): // script
			b = append(b, upper(sub[0]))
			b = appendLower(b, sub[1:])
		case len(sub) == 2 && isAlpha(sub), len(sub) == 3 && !isAlpha(sub): // region
			for k := 0; k < len(sub); k++ {
				b = append(b, upper(sub[k]))
			}
		default:
			b = appendLower(b, sub)
		}
		i = j + 1
		if j == len(s)-1 { // trailing separator
			return ""
		}
	}
	if string(b) == s {
		return s
	}
	return string(b)
}

func isAlnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= 'a' && c <= 'z' || s[i] >= '0' && s[i] <= '9') {
			return false
		}
	}
	return true
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}
