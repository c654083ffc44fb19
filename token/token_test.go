package token

import (
	"encoding/base64"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repermit/repermit"
)

const (
	secretA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" // 40 bytes
	secretB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

var deadline = time.Date(2026, 12, 31, 9, 0, 0, 0, time.UTC)

func newSigner(t testing.TB, secrets string) *Signer {
	t.Helper()
	sec, err := ParseSecrets(secrets)
	if err != nil {
		t.Fatalf("ParseSecrets: %v", err)
	}
	s, err := NewSigner(sec)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

func sample() Claims {
	return Claims{Purpose: Confirm, CampaignSeq: 7, Recipient: 12345, Deadline: deadline}
}

func TestRoundTrip(t *testing.T) {
	s := newSigner(t, secretA)
	before := deadline.Add(-time.Hour)
	tests := []struct {
		name string
		c    Claims
	}{
		{"confirm", sample()},
		{"unsubscribe", Claims{Purpose: Unsubscribe, CampaignSeq: 7, Recipient: 12345, Deadline: deadline}},
		{"zeros", Claims{Purpose: Confirm, Deadline: deadline}},
		{"max ids", Claims{Purpose: Unsubscribe, CampaignSeq: math.MaxUint32, Recipient: math.MaxUint32, Deadline: deadline}},
		{"other zone", Claims{Purpose: Confirm, CampaignSeq: 1, Recipient: 2, Deadline: deadline.In(time.FixedZone("CET", 3600))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := s.Sign(tt.c)
			if len(tok) != 43 {
				t.Errorf("len(%q) = %d, want 43", tok, len(tok))
			}
			got, err := s.Verify(tok, before)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			assertClaims(t, got, tt.c)
		})
	}
}

func assertClaims(t *testing.T, got, want Claims) {
	t.Helper()
	if got.Purpose != want.Purpose || got.CampaignSeq != want.CampaignSeq ||
		got.Recipient != want.Recipient || !got.Deadline.Equal(want.Deadline) {
		t.Errorf("claims = %+v, want %+v", got, want)
	}
}

func TestVerifyLeavesPurposeToCaller(t *testing.T) {
	s := newSigner(t, secretA)
	c := sample()
	c.Purpose = Unsubscribe
	// A /u token presented at /c verifies; the route must compare Purpose.
	got, err := s.Verify(s.Sign(c), deadline)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Purpose != Unsubscribe {
		t.Errorf("Purpose = %d, want Unsubscribe", got.Purpose)
	}
	if s.Sign(c) == s.Sign(sample()) {
		t.Error("confirm and unsubscribe tokens of one recipient are equal")
	}
}

func TestFlippedBitIsInvalid(t *testing.T) {
	s := newSigner(t, secretA)
	tok := s.Sign(sample())
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(raw) * 8 {
		b := append([]byte(nil), raw...)
		b[i/8] ^= 1 << (i % 8)
		forged := base64.RawURLEncoding.EncodeToString(b)
		if _, err := s.Verify(forged, deadline); !errors.Is(err, ErrInvalid) {
			t.Errorf("byte %d bit %d flipped: err = %v, want ErrInvalid", i/8, i%8, err)
		}
	}
	// Bits of the text itself, including the two unused bits of the last
	// character and flips that leave the alphabet.
	for i := range len(tok) * 8 {
		b := []byte(tok)
		b[i/8] ^= 1 << (i % 8)
		if _, err := s.Verify(string(b), deadline); !errors.Is(err, ErrInvalid) {
			t.Errorf("char %d bit %d flipped (%q): err = %v, want ErrInvalid", i/8, i%8, b, err)
		}
	}
}

func TestMalformedIsInvalid(t *testing.T) {
	s := newSigner(t, secretA)
	tok := s.Sign(sample())
	std := base64.StdEncoding.EncodeToString(mustDecode(t, tok))
	tests := []struct {
		name string
		tok  string
	}{
		{"empty", ""},
		{"one char", tok[:1]},
		{"truncated by one", tok[:42]},
		{"truncated to 40", tok[:40]},
		{"extended", tok + "A"},
		{"padded", tok + "="},
		{"doubled", tok + tok},
		{"trailing newline", tok + "\n"},
		{"newline inside", tok[:20] + "\n" + tok[21:]},
		{"space inside", tok[:20] + " " + tok[21:]},
		{"standard alphabet with padding", std},
		{"non-base64", strings.Repeat("!", 43)},
		{"all A", strings.Repeat("A", 43)},
		{"utf-8", strings.Repeat("é", 21) + "A"},
		{"NUL", strings.Repeat("\x00", 43)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Verify(tt.tok, deadline)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Verify(%q) err = %v, want ErrInvalid", tt.tok, err)
			}
			if got != (Claims{}) {
				t.Errorf("Verify(%q) claims = %+v, want zero", tt.tok, got)
			}
		})
	}
}

func mustDecode(t *testing.T, tok string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The lenient decoder ignores the last character's two unused bits; if
// Verify used it, one token would have four spellings.
func TestOnlyOneSpellingVerifies(t *testing.T) {
	s := newSigner(t, secretA)
	tok := s.Sign(sample())
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	accepted := 0
	for _, ch := range alphabet {
		variant := tok[:42] + string(ch)
		if _, err := s.Verify(variant, deadline); err == nil {
			accepted++
			if variant != tok {
				t.Errorf("variant %q of %q verifies", variant, tok)
			}
		}
	}
	if accepted != 1 {
		t.Errorf("%d spellings verify, want 1", accepted)
	}
}

// The version check sits behind the MAC, so only blocks sealed with the
// signer's own keys reach it. Version 1 (tokens before deployment binding)
// is refused too.
func TestAuthenticForeignFormatIsInvalid(t *testing.T) {
	s := newSigner(t, secretA)
	seal := func(pt [blockLen]byte) string {
		var raw [rawLen]byte
		s.keys[0].seal(&raw, &pt)
		return s.enc.EncodeToString(raw[:])
	}
	var ok [blockLen]byte
	ok[0], ok[1], ok[13] = version, byte(Confirm), 0xff
	if _, err := s.Verify(seal(ok), time.Unix(0, 0)); err != nil {
		t.Fatalf("well-formed block: %v", err)
	}
	tests := []struct {
		name string
		pos  int
		val  byte
	}{
		{"version 0", 0, 0},
		{"version 1", 0, 1},
		{"version 3", 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt := ok
			pt[tt.pos] = tt.val
			if _, err := s.Verify(seal(pt), time.Unix(0, 0)); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestOtherSecretIsInvalid(t *testing.T) {
	tok := newSigner(t, secretA).Sign(sample())
	if _, err := newSigner(t, secretB).Verify(tok, deadline); !errors.Is(err, ErrInvalid) {
		t.Errorf("err = %v, want ErrInvalid", err)
	}
}

func TestRotation(t *testing.T) {
	old := newSigner(t, secretA)
	rotated := newSigner(t, secretB+","+secretA)

	byOld := old.Sign(sample())
	got, err := rotated.Verify(byOld, deadline)
	if err != nil {
		t.Fatalf("token of the old secret under new,old: %v", err)
	}
	assertClaims(t, got, sample())

	byNew := rotated.Sign(sample())
	if byNew == byOld {
		t.Fatal("new,old signs with the old secret")
	}
	if _, err := rotated.Verify(byNew, deadline); err != nil {
		t.Errorf("token of the new secret under new,old: %v", err)
	}
	if _, err := old.Verify(byNew, deadline); !errors.Is(err, ErrInvalid) {
		t.Errorf("token of the new secret under old alone: err = %v, want ErrInvalid", err)
	}
	if want := newSigner(t, secretB).Sign(sample()); byNew != want {
		t.Errorf("new,old signs %q, new alone %q", byNew, want)
	}
}

func TestExpiry(t *testing.T) {
	s := newSigner(t, secretA)
	tests := []struct {
		name     string
		deadline time.Time
		signed   time.Time // the deadline the token carries
		now      time.Time
		want     error
	}{
		{"long before", deadline, deadline, deadline.AddDate(0, -1, 0), nil},
		{"at the deadline", deadline, deadline, deadline, nil},
		{"a nanosecond after", deadline, deadline, deadline.Add(time.Nanosecond), ErrExpired},
		{"a year after", deadline, deadline, deadline.AddDate(1, 0, 0), ErrExpired},
		// Rounded down: the token ends with the second, not after it.
		{"fraction rounded down", deadline.Add(900 * time.Millisecond), deadline, deadline.Add(time.Millisecond), ErrExpired},
		{"zero deadline", time.Time{}, time.Unix(0, 0), time.Unix(1, 0), ErrExpired},
		{"before 1970", time.Unix(-100, 0), time.Unix(0, 0), time.Unix(1, 0), ErrExpired},
		{"beyond 2106 clamps", time.Unix(math.MaxUint32+100, 0), time.Unix(math.MaxUint32, 0), time.Unix(math.MaxUint32, 0), nil},
		{"beyond 2106 still ends", time.Unix(math.MaxUint32+100, 0), time.Unix(math.MaxUint32, 0), time.Unix(math.MaxUint32+1, 0), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sample()
			c.Deadline = tt.deadline
			got, err := s.Verify(s.Sign(c), tt.now)
			if err != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			// Expired tokens still tell which campaign and recipient.
			c.Deadline = tt.signed
			assertClaims(t, got, c)
			if got.Deadline.Location() != time.UTC {
				t.Errorf("Deadline in %v, want UTC", got.Deadline.Location())
			}
		})
	}
}

func TestTokenHidesRecipient(t *testing.T) {
	s := newSigner(t, secretA)
	prev := s.Sign(Claims{Purpose: Confirm, CampaignSeq: 1, Recipient: 0, Deadline: deadline})
	seen := map[string]bool{prev: true}
	longest := 0
	for i := uint32(1); i <= 2000; i++ {
		tok := s.Sign(Claims{Purpose: Confirm, CampaignSeq: 1, Recipient: i, Deadline: deadline})
		if len(tok) != 43 {
			t.Fatalf("len(%q) = %d, want 43", tok, len(tok))
		}
		if seen[tok] {
			t.Fatalf("recipient %d repeats a token", i)
		}
		seen[tok] = true
		n := commonPrefix(prev, tok)
		longest = max(longest, n)
		prev = tok
	}
	// Sequential plaintexts share their first 9 bytes (12 characters); a
	// random prefix repeats 4 characters (24 bits) in 2000 pairs with
	// probability about 1e-4.
	if longest >= 4 {
		t.Errorf("consecutive recipients share a prefix of %d characters", longest)
	}
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func TestParseSecrets(t *testing.T) {
	long := strings.Repeat("k", 32)
	short := "tooshort-but-secret"
	tests := []struct {
		in      string
		want    int    // number of secrets; 0 means an error
		wantErr string // substring of the error
	}{
		{long, 1, ""},
		{long + "," + secretA, 2, ""},
		{" " + long + " , " + secretA + "\n", 2, ""},
		{"", 0, "no signing secret"},
		{"  ", 0, "no signing secret"},
		{short, 0, "secret 1 of 1 is 19 bytes"},
		{long + "," + short, 0, "secret 2 of 2 is 19 bytes"},
		{long + ",", 0, "secret 2 of 2 is 0 bytes"},
		{"," + long, 0, "secret 1 of 2 is 0 bytes"},
		{strings.Repeat("k", 31), 0, "secret 1 of 1 is 31 bytes"},
	}
	for _, tt := range tests {
		got, err := ParseSecrets(tt.in)
		if tt.want > 0 {
			if err != nil {
				t.Errorf("ParseSecrets(%q): %v", tt.in, err)
			} else if len(got) != tt.want {
				t.Errorf("ParseSecrets(%q) gave %d secrets, want %d", tt.in, len(got), tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseSecrets(%q) = %q, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseSecrets(%q) err = %q, want it to contain %q", tt.in, err, tt.wantErr)
		}
		if strings.Contains(err.Error(), short) || strings.Contains(err.Error(), long) {
			t.Errorf("ParseSecrets(%q) err = %q shows a secret", tt.in, err)
		}
		if code := repermit.ErrorCode(err); code != repermit.EINVALID {
			t.Errorf("ParseSecrets(%q) error code = %q, want %q", tt.in, code, repermit.EINVALID)
		}
	}
	// Blanks around a secret are not part of it.
	a, _ := ParseSecrets(" " + secretA + " ")
	b, _ := ParseSecrets(secretA)
	if string(a[0]) != string(b[0]) {
		t.Errorf("blanks kept: %q", a[0])
	}
}

func TestNewSignerRejectsBadSecrets(t *testing.T) {
	tests := []struct {
		name    string
		secrets [][]byte
	}{
		{"nil", nil},
		{"empty list", [][]byte{}},
		{"short", [][]byte{[]byte("short")}},
		{"short second", [][]byte{[]byte(secretA), make([]byte, 31)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := NewSigner(tt.secrets); err == nil {
				t.Errorf("NewSigner = %v, want an error", s)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	s := newSigner(t, secretB+","+secretA)
	old := newSigner(t, secretA)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c := Claims{Purpose: Confirm, CampaignSeq: uint32(g), Recipient: uint32(i), Deadline: deadline}
				for _, tok := range []string{s.Sign(c), old.Sign(c)} {
					got, err := s.Verify(tok, deadline)
					if err != nil || got.Recipient != uint32(i) || got.CampaignSeq != uint32(g) {
						t.Errorf("Verify = %+v, %v; want recipient %d of %d", got, err, i, g)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func FuzzVerify(f *testing.F) {
	a := newSigner(f, secretA)
	b := newSigner(f, secretB)
	both := newSigner(f, secretA+","+secretB)
	now := deadline
	for _, c := range []Claims{
		sample(),
		{Purpose: Unsubscribe, CampaignSeq: math.MaxUint32, Recipient: 1, Deadline: deadline.Add(-time.Second)},
		{Purpose: Confirm, Deadline: deadline.AddDate(10, 0, 0)},
	} {
		f.Add(a.Sign(c))
		f.Add(b.Sign(c))
	}
	f.Add("")
	f.Add(strings.Repeat("A", 43))
	f.Add(a.Sign(sample())[:42] + "B")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := both.Verify(tok, now)
		switch {
		case err == nil, errors.Is(err, ErrExpired):
			// Accepted: the token must be exactly what one of the keys
			// signs for these claims, so no other spelling gets in.
			if tok != a.Sign(c) && tok != b.Sign(c) {
				t.Errorf("accepted %q (claims %+v) re-signs as %q / %q", tok, c, a.Sign(c), b.Sign(c))
			}
		case errors.Is(err, ErrInvalid):
			if c != (Claims{}) {
				t.Errorf("rejected %q but returned claims %+v", tok, c)
			}
		default:
			t.Errorf("Verify(%q) err = %v, want nil, ErrExpired or ErrInvalid", tok, err)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	s := newSigner(b, secretA)
	c := sample()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Recipient = uint32(i)
		s.Sign(c)
	}
}

func BenchmarkVerify(b *testing.B) {
	s := newSigner(b, secretB+","+secretA)
	valid := s.Sign(sample())
	byOld := newSigner(b, secretA).Sign(sample())
	forged := []byte(valid)
	forged[10] = 'A'
	if valid[10] == 'A' {
		forged[10] = 'B'
	}
	for _, bb := range []struct {
		name string
		tok  string
	}{
		{"valid", valid},
		{"old key", byOld},
		{"forged", string(forged)},
		{"wrong length", valid[:30]},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Verify(bb.tok, deadline)
			}
		})
	}
}

// TestTokensAreBoundToTheirDeploymentAndCampaign: with one secret, a token
// of one deployment is invalid in every other (and unbound ones in bound
// signers), and verified claims name the campaign they were signed for.
func TestTokensAreBoundToTheirDeploymentAndCampaign(t *testing.T) {
	bound := func(deployment string) *Signer {
		t.Helper()
		s, err := NewBoundSigner([][]byte{[]byte(secretA)}, deployment)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := bound(Deployment("repermit", "aaaa")), bound(Deployment("repermit", "bbbb"))
	for name, pair := range map[string][2]*Signer{
		"other deployment id": {a, b},
		"other prefix":        {a, bound(Deployment("other", "aaaa"))},
		"unbound in bound":    {newSigner(t, secretA), a},
		"bound in unbound":    {a, newSigner(t, secretA)},
	} {
		c := sample()
		c.Campaign = "newsletter"
		if _, err := pair[1].Verify(pair[0].Sign(c), deadline); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
		if _, err := pair[0].Verify(pair[0].Sign(c), deadline); err != nil {
			t.Errorf("%s: own token: %v", name, err)
		}
	}
	c := sample()
	c.Campaign = "newsletter"
	got, err := a.Verify(a.Sign(c), deadline)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsFor("newsletter") || got.IsFor("newsletter-2") || got.IsFor("") {
		t.Errorf("IsFor: newsletter %v, newsletter-2 %v, empty %v; want true, false, false",
			got.IsFor("newsletter"), got.IsFor("newsletter-2"), got.IsFor(""))
	}
}

// TestVersionOneTokensVerifyAsUnbound: links mailed before tokens were bound
// (made by the version 1 signer of commit 17a9a5a with secretA) keep
// verifying under the same secret, in any deployment, as Unbound claims for
// no campaign in particular; the caller decides where they still count.
func TestVersionOneTokensVerifyAsUnbound(t *testing.T) {
	const (
		v1Confirm     = "Cg1Qqz20e8BNw6n23aOd3GJhPE-sVcOSlI4lsgwyunw"
		v1Unsubscribe = "LICRTSVFpnHXHIHOe4tg1-qs7EjSww6X-WJXV6HrI_U"
	)
	bound, err := NewBoundSigner([][]byte{[]byte(secretB), []byte(secretA)}, Deployment("repermit", "aaaa"))
	if err != nil {
		t.Fatal(err)
	}
	for tok, purpose := range map[string]Purpose{v1Confirm: Confirm, v1Unsubscribe: Unsubscribe} {
		got, err := bound.Verify(tok, deadline.Add(time.Hour))
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("%s after its deadline: %v, want ErrExpired with claims", tok, err)
		}
		want := sample()
		want.Purpose = purpose
		assertClaims(t, got, want)
		if !got.Unbound() || got.IsFor("") || got.IsFor("newsletter") {
			t.Errorf("%s: Unbound %v, IsFor(\"\") %v; want an unbound token for no campaign", tok, got.Unbound(), got.IsFor(""))
		}
	}
	if _, err := newSigner(t, secretB).Verify(v1Confirm, deadline); !errors.Is(err, ErrInvalid) {
		t.Errorf("version 1 token under another secret: %v, want ErrInvalid", err)
	}
	c := sample()
	c.Campaign = "newsletter"
	if got, err := bound.Verify(bound.Sign(c), deadline); err != nil || got.Unbound() {
		t.Errorf("a token signed now: unbound %v, %v", got.Unbound(), err)
	}
}
