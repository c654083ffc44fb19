package bench

import (
	"strings"
	"testing"

	"github.com/repermit/repermit/recipients"
)

// TestRealisticShapeIsTheDocumentedDistribution checks the figures the
// shape's documentation promises on 20,000 rows: a quarter at gmail.com,
// 20+ domains, names that are long now and then, every row a valid and
// distinct address, and rows filling none to all three extra columns.
func TestRealisticShapeIsTheDocumentedDistribution(t *testing.T) {
	const n = 20000
	seen := make(map[string]bool, n)
	domains := make(map[string]int)
	locales := make(map[string]bool)
	var extras [4]int
	longNames, noNames, longAddrs := 0, 0, 0
	for i := range n {
		r := ShapeRealistic.Generate(i)
		addr, err := recipients.Normalize(r.Email)
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if seen[addr] {
			t.Fatalf("row %d repeats address %s", i, addr)
		}
		seen[addr] = true
		_, d, _ := strings.Cut(r.Email, "@")
		domains[d]++
		locales[r.Locale] = true
		extras[len(r.Extra)]++
		switch {
		case r.Name == "":
			noNames++
		case len(r.Name) > 25:
			longNames++
		}
		if len(r.Email) > 40 {
			longAddrs++
		}
	}
	pct := func(k int) float64 { return 100 * float64(k) / n }
	if g := pct(domains["gmail.com"]); g < 23 || g > 27 {
		t.Errorf("gmail.com has %.1f %% of the rows, want about 25", g)
	}
	if len(domains) < 20 {
		t.Errorf("%d domains, want 20 or more", len(domains))
	}
	if len(locales) < 4 {
		t.Errorf("%d locales, want 4 or more", len(locales))
	}
	if p := pct(noNames); p < 8 || p > 12 {
		t.Errorf("%.1f %% of rows without a name, want about 10", p)
	}
	if p := pct(longNames); p < 2 {
		t.Errorf("%.1f %% of names longer than 25 bytes, want some", p)
	}
	if p := pct(longAddrs); p < 5 {
		t.Errorf("%.1f %% of addresses longer than 40 bytes, want some", p)
	}
	for k, c := range extras {
		if c == 0 {
			t.Errorf("no row fills %d extra columns (by count: %v)", k, extras)
		}
	}
}

func TestShapesDiffer(t *testing.T) {
	for i := range 100 {
		r, m, w := ShapeRealistic.Generate(i), ShapeMinimal.Generate(i), ShapeWide.Generate(i)
		if r.Email != m.Email || r.Email != w.Email {
			t.Fatalf("row %d: shapes disagree on the address: %s, %s, %s", i, r.Email, m.Email, w.Email)
		}
		if m.Name != "" || m.Locale != "" || m.Extra != nil {
			t.Fatalf("row %d of the minimal shape has more than an address: %+v", i, m)
		}
		if len(w.Extra) != len(extraColumns) {
			t.Fatalf("row %d of the wide shape fills %d extra columns, want %d", i, len(w.Extra), len(extraColumns))
		}
	}
	if _, err := ParseShape("tuned"); err == nil {
		t.Error("ParseShape accepted an unknown shape")
	}
}
