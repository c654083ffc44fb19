package recipients

import (
	"strings"
	"testing"

	"github.com/repermit/repermit"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
		err      string // substring; "" means valid
	}{
		{in: "ann@example.com", want: "ann@example.com"},
		{in: "  Ann.Lee@Example.COM \t", want: "ann.lee@example.com"},
		{in: "o'brien+news@example.co.uk", want: "o'brien+news@example.co.uk"},
		{in: "jörg@bücher.example", want: "jörg@xn--bcher-kva.example"},
		{in: "ann@BÜCHER.example", want: "ann@xn--bcher-kva.example"},
		{in: "ann@xn--bcher-kva.example", want: "ann@xn--bcher-kva.example"},
		{in: "", err: "empty address"},
		{in: "   ", err: "empty address"},
		{in: "ann", err: "missing @"},
		{in: "@example.com", err: "missing the part before @"},
		{in: "ann@", err: "missing the domain"},
		{in: "Ann <ann@example.com>", err: "bare address"},
		{in: "<ann@example.com>", err: "bare address"},
		{in: "ann@example.com (Ann)", err: "invalid address"},
		{in: "ann lee@example.com", err: "invalid address"},
		{in: `"ann lee"@example.com`, err: "not a bare address"},
		{in: "ann..lee@example.com", err: "invalid address"},
		{in: ".ann@example.com", err: "invalid address"},
		{in: "ann@@example.com", err: "invalid address"},
		{in: "ann@localhost", err: "has no dot"},
		{in: "ann@[192.0.2.1]", err: "address literals"},
		{in: "ann@192.0.2.1", err: "is a number"},
		{in: "ann@-example.com", err: "starts or ends with '-'"},
		{in: "ann@example..com", err: "empty label"},
		{in: "ann@exa_mple.com", err: "invalid character"},
		{in: "ann@example.com.", err: "empty label"},
		{in: "ann@xn--zz.example", err: "international domain"},
		{in: strings.Repeat("a", 65) + "@example.com", err: "longer than 64"},
		{in: strings.Repeat("a", 64) + "@" + strings.Repeat(strings.Repeat("b", 60)+".", 3) + "example.com", err: "longer than 254"},
		{in: "ann\xff@example.com", err: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
				}
				// Normalizing is idempotent: the importer and the web
				// both normalize what may already be normalized.
				if again, err := Normalize(got); err != nil || again != got {
					t.Errorf("Normalize(%q) = %q, %v; want it unchanged", got, again, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Normalize(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			if repermit.ErrorCode(err) != repermit.EINVALID {
				t.Errorf("error code %q, want EINVALID", repermit.ErrorCode(err))
			}
		})
	}
}

func TestHash(t *testing.T) {
	// sha256("ann@example.com"), computed independently with sha256sum.
	const want = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
	got := Hash("ann@example.com")
	if len(got) != 64 || strings.ToLower(got) != got || !isHash(got) {
		t.Fatalf("Hash = %q, want 64 lower-case hex digits", got)
	}
	if got != want {
		t.Errorf("Hash = %q, want %q", got, want)
	}
}

func TestNormalizeLocale(t *testing.T) {
	tests := []struct{ in, want string }{
		{"de", "de"},
		{"DE", "de"},
		{"de-at", "de-AT"},
		{"de_AT", "de-AT"},
		{" en-GB ", "en-GB"},
		{"zh-hant-tw", "zh-Hant-TW"},
		{"es-419", "es-419"},
		{"", ""},
		{"d", ""},
		{"deutsch", ""},
		{"de-", ""},
		{"de--at", ""},
		{"de AT", ""},
		{"1e", ""},
		{"de-abcdefghi", ""},
	}
	for _, tt := range tests {
		if got := normalizeLocale(tt.in); got != tt.want {
			t.Errorf("normalizeLocale(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
