package token

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

var verpShape = regexp.MustCompile(`^bounces\+[a-z2-7]{52}@bounce\.acme\.example$`)

func TestBounceAddressRoundTrip(t *testing.T) {
	s := newSigner(t, secretA)
	c := Claims{Purpose: Confirm, CampaignSeq: 7, Recipient: 12345, Deadline: deadline}
	addr := s.BounceAddress(c, "bounce.acme.example")
	if !verpShape.MatchString(addr) {
		t.Fatalf("BounceAddress = %q, want bounces+<52 lower-case base32>@bounce.acme.example", addr)
	}
	if local := addr[:strings.IndexByte(addr, '@')]; len(local) > 64 {
		t.Errorf("local part of %d characters; RFC 5321 allows 64", len(local))
	}
	tests := []struct {
		name    string
		addr    string
		now     time.Time
		wantErr error
	}{
		{"as sent", addr, deadline.Add(-time.Hour), nil},
		{"upper-cased by a relay", strings.ToUpper(addr), deadline.Add(-time.Hour), nil},
		{"in angle brackets", "<" + addr + ">", deadline.Add(-time.Hour), nil},
		{"after the deadline", addr, deadline.Add(time.Hour), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.VerifyBounceAddress(tt.addr, tt.now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyBounceAddress: %v, want %v", err, tt.wantErr)
			}
			if got.Purpose != Bounce || got.CampaignSeq != 7 || got.Recipient != 12345 || !got.Deadline.Equal(deadline) {
				t.Errorf("claims %+v, want Bounce for campaign 7, recipient 12345", got)
			}
		})
	}
}

func TestForgedBounceAddressIsRefused(t *testing.T) {
	s := newSigner(t, secretA)
	c := Claims{CampaignSeq: 7, Recipient: 12345, Deadline: deadline}
	addr := s.BounceAddress(c, "bounce.acme.example")
	local, domain, _ := strings.Cut(addr, "@")
	enc := strings.TrimPrefix(local, BouncePrefix)
	flip := func(i int) string {
		b := []byte(enc)
		b[i] = map[bool]byte{true: 'b', false: 'a'}[b[i] == 'a']
		return BouncePrefix + string(b) + "@" + domain
	}
	// A confirm link's token, spelled as a VERP address: authentic, but
	// not a bounce token.
	raw, _ := base64.RawURLEncoding.DecodeString(s.Sign(Claims{Purpose: Confirm, CampaignSeq: 7, Recipient: 12345, Deadline: deadline}))
	confirmAsVERP := BouncePrefix + verpEnc.EncodeToString(raw) + "@" + domain
	// The last of 52 characters carries one bit of the token and four
	// unused ones, so it is 'a' or 'q'; the next letter is a second
	// spelling of the same bytes.
	last := enc[len(enc)-1]
	if last != 'a' && last != 'q' {
		t.Fatalf("last character %q, want a or q", last)
	}
	alt := last + 1
	tests := []struct{ name, addr string }{
		{"first character changed", flip(0)},
		{"last character changed", flip(len(enc) - 1)},
		{"another deployment's secret", newSigner(t, secretB).BounceAddress(c, domain)},
		{"confirm token as VERP", confirmAsVERP},
		{"truncated", BouncePrefix + enc[:40] + "@" + domain},
		{"no prefix", enc + "@" + domain},
		{"other prefix", "bounce+" + enc + "@" + domain},
		{"no domain", local},
		{"empty", ""},
		{"plain address", "ada@example.org"},
		{"second spelling", BouncePrefix + enc[:len(enc)-1] + string(alt) + "@" + domain},
		{"base64 alphabet", BouncePrefix + s.Sign(c) + "@" + domain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.addr == addr {
				t.Fatal("test case is the authentic address")
			}
			if got, err := s.VerifyBounceAddress(tt.addr, deadline.Add(-time.Hour)); !errors.Is(err, ErrInvalid) {
				t.Errorf("VerifyBounceAddress(%q) = %+v, %v; want ErrInvalid", tt.addr, got, err)
			}
		})
	}
}

func TestBounceTokenOpensNoPage(t *testing.T) {
	s := newSigner(t, secretA)
	addr := s.BounceAddress(Claims{CampaignSeq: 7, Recipient: 1, Deadline: deadline}, "b.example")
	enc := strings.TrimPrefix(addr[:strings.IndexByte(addr, '@')], BouncePrefix)
	raw, err := verpEnc.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(base64.RawURLEncoding.EncodeToString(raw), deadline.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The web server opens a page only for the purpose of its route.
	if got.Purpose == Confirm || got.Purpose == Unsubscribe {
		t.Errorf("a VERP token has purpose %d, which opens a page", got.Purpose)
	}
}
