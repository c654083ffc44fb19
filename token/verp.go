package token

import (
	"encoding/base32"
	"encoding/base64"
	"strings"
	"time"
)

// Bounce is the purpose of a VERP token: the Return-Path of one mail,
// bounces+TOKEN@bounce-domain. A delivery status notification comes back to
// that address, so the token alone names the campaign and recipient that
// bounced, and only a bounce to an address this deployment signed can
// mark anyone bounced.
const Bounce Purpose = 3

// BouncePrefix starts the local part of every VERP address.
const BouncePrefix = "bounces+"

// verpEnc writes the token's bytes for a local part: mail systems may
// change the case of a local part (RFC 5321 lets the receiving host
// decide), so the alphabet is lower-case base32, and a signed token of 32
// bytes is 52 characters, within the 64 a local part may have after the
// prefix.
var verpEnc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// BounceAddress returns the VERP Return-Path for the recipient and
// campaign of c at domain: bounces+TOKEN@domain, TOKEN a signed Bounce
// token that carries no address.
func (s *Signer) BounceAddress(c Claims, domain string) string {
	c.Purpose = Bounce
	raw, err := base64.RawURLEncoding.DecodeString(s.Sign(c))
	if err != nil {
		// Sign writes raw URL-safe base64; anything else is a bug here.
		panic("token: Sign wrote a token that is not raw URL base64: " + err.Error())
	}
	return BouncePrefix + verpEnc.EncodeToString(raw) + "@" + domain
}

// VerifyBounceAddress returns the claims of a VERP address that
// BounceAddress wrote, whatever the case of its letters and its domain. A
// bounce may arrive after the campaign's deadline and still says that the
// address is dead, so an authentic token past its deadline comes back with
// its claims and ErrExpired, as Verify does. Anything else is ErrInvalid.
func (s *Signer) VerifyBounceAddress(addr string, now time.Time) (Claims, error) {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return Claims{}, ErrInvalid
	}
	local := strings.ToLower(addr[:at])
	enc, ok := strings.CutPrefix(local, BouncePrefix)
	if !ok {
		return Claims{}, ErrInvalid
	}
	raw, err := verpEnc.DecodeString(enc)
	// One spelling per token: the decoder ignores the unused bits of the
	// last character, re-encoding does not.
	if err != nil || verpEnc.EncodeToString(raw) != enc {
		return Claims{}, ErrInvalid
	}
	c, err := s.Verify(base64.RawURLEncoding.EncodeToString(raw), now)
	if err != nil && err != ErrExpired {
		return Claims{}, err
	}
	if c.Purpose != Bounce {
		return Claims{}, ErrInvalid
	}
	return c, err
}
