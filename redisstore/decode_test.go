package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// setRow replaces the stored data of recipient slot of bucket 0 of
// campaign id with v, as a campaign of an older release stored it.
func setRow(t *testing.T, r *redistest.Redis, id string, slot int, v string) {
	t.Helper()
	ctx := context.Background()
	key := fmt.Sprintf("%s:{%s}:b:0", r.Prefix, id)
	s := fmt.Sprint(slot)
	if err := r.Client.HDel(ctx, key, "e"+s, "f"+s, "g"+s).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.HSet(ctx, key, "d"+s, v).Err(); err != nil {
		t.Fatal(err)
	}
}

// readAllWays reads recipient idx of id through each reader that decodes
// rows: Recipient, Bucket and ReadForSend.
func readAllWays(t *testing.T, s *redisstore.Store, id string, idx int64) (map[string]*repermit.Recipient, map[string]error) {
	t.Helper()
	ctx := context.Background()
	got := map[string]*repermit.Recipient{}
	errs := map[string]error{}
	got["Recipient"], errs["Recipient"] = s.Recipient(ctx, id, idx)
	rs, err := s.Bucket(ctx, id, idx/redisstore.BucketSize)
	errs["Bucket"] = err
	for _, r := range rs {
		if r.Index == idx {
			got["Bucket"] = r
		}
	}
	_, rs, err = s.ReadForSend(ctx, id, []int64{idx})
	errs["ReadForSend"] = err
	if len(rs) == 1 {
		got["ReadForSend"] = rs[0]
	}
	return got, errs
}

// TestTextRowsOfOldCampaignsStillDecode: recipients stored as text rows,
// before the binary rows, read back with every escape undone.
func TestTextRowsOfOldCampaignsStillDecode(t *testing.T) {
	cases := []struct {
		name   string
		stored string
		want   repermit.Recipient
	}{
		{"address only", "old@example.com", repermit.Recipient{Email: "old@example.com"}},
		{"address, name, locale", "old@example.com\x1fOld Name\x1fde", repermit.Recipient{Email: "old@example.com", Name: "Old Name", Locale: "de"}},
		{"extra columns", "e@example.org\x1fN\x1fen\x1fcity=Köln\x1fzip=50667",
			repermit.Recipient{Email: "e@example.org", Name: "N", Locale: "en", Extra: map[string]string{"city": "Köln", "zip": "50667"}}},
		{"escaped separators", "e@example.org\x1fA\x1e_B \x1e\x1e C\x1f\x1fcol\x1e-umn=x=y\x1fend=\x1e",
			repermit.Recipient{Email: "e@example.org", Name: "A\x1fB \x1e C", Extra: map[string]string{"col=umn": "x=y", "end": "\x1e"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, r := newStore(t)
			launch(t, s, "old", 2)
			setRow(t, r, "old", 1, c.stored)
			got, errs := readAllWays(t, s, "old", 1)
			for way, rec := range got {
				if errs[way] != nil || rec == nil {
					t.Errorf("%s: %v, %v", way, rec, errs[way])
					continue
				}
				if rec.Email != c.want.Email || rec.Name != c.want.Name || rec.Locale != c.want.Locale || fmt.Sprint(rec.Extra) != fmt.Sprint(c.want.Extra) {
					t.Errorf("%s = %q %q %q %v; want %q %q %q %v", way, rec.Email, rec.Name, rec.Locale, rec.Extra,
						c.want.Email, c.want.Name, c.want.Locale, c.want.Extra)
				}
			}
		})
	}
}

// TestMalformedRowIsAnErrorNamingTheRecipient: a damaged row is an error
// naming the recipient, from every reader, never a panic or a recipient
// with made-up data; the other recipients of the bucket still read.
func TestMalformedRowIsAnErrorNamingTheRecipient(t *testing.T) {
	cases := []struct {
		name   string
		stored string
		want   string
	}{
		{"version byte only", "\x01", "malformed"},
		{"literal domain missing", "\x01\x00\x01a", "malformed"},
		{"domain code out of range", "\x01\xfe\x01a\x00\x00", "malformed"},
		{"length past the end", "\x01\x01\x05ab", "malformed"},
		{"no locale byte", "\x01\x01\x01a", "malformed"},
		{"locale code out of range", "\x01\x01\x01a\xfe\x00", "malformed"},
		{"literal locale cut short", "\x01\x01\x01a\xff\x09de", "malformed"},
		{"name missing", "\x01\x01\x01a\x00", "malformed"},
		{"column number cut short", "\x01\x01\x01a\x00\x00\x80", "malformed"},
		{"column value missing", "\x01\x01\x01a\x00\x00\x00", "malformed"},
		{"column the campaign lacks", "\x01\x01\x01a\x00\x00\x05\x01x", "unknown column 5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, r := newStore(t)
			ctx := context.Background()
			launch(t, s, "camp", 3)
			setRow(t, r, "camp", 1, c.stored)
			got, errs := readAllWays(t, s, "camp", 1)
			for way, err := range errs {
				if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "recipient 1 of camp") {
					t.Errorf("%s = %+v, %v; want an error naming recipient 1 and %q", way, got[way], err, c.want)
				}
			}
			for _, idx := range []int64{0, 2} {
				if rec, err := s.Recipient(ctx, "camp", idx); err != nil || rec.Email != fmt.Sprintf("a%d@example.com", idx) {
					t.Errorf("neighbour %d = %v, %v", idx, rec, err)
				}
			}
		})
	}
}

// TestRowNamingANewColumnRereadsTheColumns: a process that cached a
// campaign's column list before a column was added reads the list again
// rather than failing or naming the value wrongly.
func TestRowNamingANewColumnRereadsTheColumns(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	imp, err := s.BeginImport(ctx, repermit.Campaign{ID: "src", StartAt: t0, Deadline: t0.Add(time.Hour)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, imp.Add(ctx, "a0@example.com", "", "", map[string]string{"city": "Köln"}))
	mustDo(t, imp.Add(ctx, "a1@example.com", "", "", map[string]string{"zip": "50667"}))
	mustDo(t, imp.Commit(ctx, repermit.ImportResult{Campaign: "src", Imported: 2}))
	launchCampaign(t, s, repermit.Campaign{ID: "camp", StartAt: t0, Deadline: t0.Add(time.Hour)}, 0)
	// camp starts with src's first column only; a reader caches that.
	meta := r.Prefix + ":{camp}:meta"
	mustDo(t, r.Client.HSet(ctx, meta, "cols", `["city"]`).Err())
	reader := redisstore.New(r.Client, r.Prefix)
	src0, err := r.Client.HGet(ctx, r.Prefix+":{src}:b:0", "d0").Result()
	mustDo(t, err)
	mustDo(t, r.Client.HSet(ctx, r.Prefix+":{camp}:b:0", "s0", "p", "d0", src0).Err())
	if rec, err := reader.Recipient(ctx, "camp", 0); err != nil || rec.Extra["city"] != "Köln" {
		t.Fatalf("first read = %+v, %v", rec, err)
	}
	// Then a row naming the second column arrives with the longer list.
	src1, err := r.Client.HGet(ctx, r.Prefix+":{src}:b:0", "d1").Result()
	mustDo(t, err)
	mustDo(t, r.Client.HSet(ctx, meta, "cols", `["city","zip"]`).Err())
	mustDo(t, r.Client.HSet(ctx, r.Prefix+":{camp}:b:0", "s1", "p", "d1", src1).Err())
	if rec, err := reader.Recipient(ctx, "camp", 1); err != nil || rec.Extra["zip"] != "50667" || len(rec.Extra) != 1 {
		t.Errorf("row with the new column = %+v, %v; want zip 50667", rec, err)
	}
}
