package redisstore_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// TestRowsRoundTripAndStayListpacks: whatever a row holds (long compound
// names, company domains, unknown locales, many or odd columns), it reads
// back as written, and its bucket stays a listpack on a real Redis (rows
// up to 256 packed bytes; a longer one makes its bucket a hashtable).
func TestRowsRoundTripAndStayListpacks(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	long := strings.Repeat("Hohenzollern-Sigmaringen ", 3)
	rows := []struct {
		email, name, locale string
		extra               map[string]string
	}{
		{"anna.mueller@gmail.com", "Anna Müller", "de", nil},
		{"a@b.example", "", "", nil},
		{"jean-baptiste.vandenbroucke.sales-team@mail.nordic-maschinenbau.co.uk", "Jean-Baptiste " + long, "fr-LU", map[string]string{"customer_id": "C00012345", "source": "tradefair-2016", "signup_date": "2014-03-17"}},
		{"x@gmail.com", "N", "en", map[string]string{"utm=source": "a\x1fb\x1ec"}},
		{"noat", "Name", "zz-Hant-TW", map[string]string{"late column": strings.Repeat("v", 150)}},
		{"ünïcødé@bücher.example", "Ünïcødé", "de-AT", map[string]string{"source": "website"}},
	}
	c := repermit.Campaign{ID: "rows", From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour)}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < redisstore.BucketSize; k++ {
		row := rows[k%len(rows)]
		if err := imp.Add(ctx, row.email, row.name, row.locale, row.extra); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "rows", Imported: redisstore.BucketSize}); err != nil {
		t.Fatal(err)
	}
	// A second store (another process) has no cached column list.
	fresh := redisstore.New(r.Client, r.Prefix)
	for _, st := range []*redisstore.Store{s, fresh} {
		for k := 0; k < redisstore.BucketSize; k++ {
			want := rows[k%len(rows)]
			got, err := st.Recipient(ctx, "rows", int64(k))
			if err != nil {
				t.Fatal(err)
			}
			if got.Email != want.email || got.Name != want.name || got.Locale != want.locale || !maps.Equal(got.Extra, want.extra) {
				t.Fatalf("row %d = %q %q %q %v, want %q %q %q %v", k, got.Email, got.Name, got.Locale, got.Extra, want.email, want.name, want.locale, want.extra)
			}
		}
	}
	if redistest.Real() {
		enc, err := s.BucketEncodings(ctx, "rows")
		if err != nil {
			t.Fatal(err)
		}
		if enc["listpack"] != 1 || len(enc) != 1 {
			t.Errorf("bucket encodings %v, want one listpack", enc)
		}
	}
	// Erasure takes the long rows' second field too.
	victim := &repermit.Recipient{Campaign: "rows", Index: 2, Email: rows[2].email}
	mail(t, s, "rows", []int64{2}, t0)
	if err := s.Bounce(ctx, victim, t0); err != nil {
		t.Fatal(err)
	}
	for _, key := range r.Keys(t) {
		for f, v := range r.Client.HGetAll(ctx, key).Val() {
			if strings.Contains(v, "Hohenzollern") && (f == "d2" || f == "e2") {
				t.Errorf("%s %s still holds the bounced recipient's data %q", key, f, v)
			}
		}
	}
}

// TestRowsOfEveryLengthReadBack: a recipient reads back whole whatever
// its packed length, across the boundaries of the fields a row is split
// into (64, 128 and 192 bytes: a row of exactly 128 bytes fills e and
// has no f).
func TestRowsOfEveryLengthReadBack(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const n = 260
	c := repermit.Campaign{ID: "lengths", From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(time.Hour)}
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	for k := range n {
		if err := imp.Add(ctx, "x@gmail.com", strings.Repeat("n", k), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "lengths", Imported: n}); err != nil {
		t.Fatal(err)
	}
	idxs := make([]int64, n)
	for k := range n {
		idxs[k] = int64(k)
		got, err := s.Recipient(ctx, "lengths", int64(k))
		if err != nil {
			t.Fatalf("name of %d bytes: %v", k, err)
		}
		if got.Name != strings.Repeat("n", k) || got.Email != "x@gmail.com" {
			t.Fatalf("name of %d bytes: read %q %q", k, got.Email, got.Name)
		}
	}
	// The worker's read of a send task's recipients, all in one call.
	_, rs, err := s.ReadForSend(ctx, "lengths", idxs)
	if err != nil {
		t.Fatal(err)
	}
	for k, got := range rs {
		if got == nil || got.Name != strings.Repeat("n", k) || got.Email != "x@gmail.com" {
			t.Fatalf("ReadForSend, name of %d bytes: read %+v", k, got)
		}
	}
}
