package export

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// fakeStore is an in-memory Store: one campaign, its recipients by index,
// its consent records by stream id, and its suppression entries, of which
// pending ones appear only after DrainSuppression, as in Redis.
type fakeStore struct {
	id         string
	recipients []*repermit.Recipient // Index i at position i; nil: none there
	ledger     map[string][]byte     // stream id → raw record
	pending    []redisstore.SuppressionEntry
	suppressed []redisstore.SuppressionEntry
	bucketErr  error
}

func (f *fakeStore) Campaign(_ context.Context, id string) (*repermit.Campaign, error) {
	if id != f.id {
		return nil, repermit.Errorf(repermit.ENOTFOUND, "campaign %q not found", id)
	}
	return &repermit.Campaign{ID: id}, nil
}

func (f *fakeStore) Imported(_ context.Context, id string) (int64, error) {
	return int64(len(f.recipients)), nil
}

func (f *fakeStore) Bucket(_ context.Context, id string, b int64) ([]*repermit.Recipient, error) {
	if f.bucketErr != nil {
		return nil, f.bucketErr
	}
	var rs []*repermit.Recipient
	for i := b * redisstore.BucketSize; i < min(int64(len(f.recipients)), (b+1)*redisstore.BucketSize); i++ {
		if f.recipients[i] != nil {
			rs = append(rs, f.recipients[i])
		}
	}
	return rs, nil
}

func (f *fakeStore) RawLedger(_ context.Context, id string, _ int64, fn func(raw []byte, streamID string) error) error {
	for sid, raw := range f.ledger {
		if err := fn(raw, sid); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) DrainSuppression(_ context.Context, id string) error {
	f.suppressed = append(f.suppressed, f.pending...)
	f.pending = nil
	return nil
}

func (f *fakeStore) Suppressions(_ context.Context, id string, fn func(redisstore.SuppressionEntry) error) error {
	for _, e := range f.suppressed {
		if e.Campaign != id {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

var answered = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// campaignStore holds recipients spread over three buckets, so that an
// export that read only the first would miss some.
func campaignStore() *fakeStore {
	f := &fakeStore{id: "c1", ledger: map[string][]byte{
		"1-0": []byte(`{"a":1}`),
		"2-0": []byte(`{"b":2}`),
	}}
	f.recipients = make([]*repermit.Recipient, 2*redisstore.BucketSize+3)
	put := func(i int64, r repermit.Recipient) {
		r.Campaign, r.Index = "c1", i
		f.recipients[i] = &r
	}
	put(0, repermit.Recipient{Email: "anna@example.com", Name: "Anna", Locale: "de", State: repermit.StateConfirmed,
		Topics: []string{"news", "events"}, AnsweredAt: answered, LedgerID: "1-0", Extra: map[string]string{"plan": "pro"}})
	put(1, repermit.Recipient{Email: "bob@example.com", State: repermit.StateExpired})
	// Confirmed, but the retention ended: only the hash is left.
	put(2, repermit.Recipient{AddressHash: "ab12", State: repermit.StateConfirmed, AnsweredAt: answered, LedgerID: "2-0"})
	put(redisstore.BucketSize+5, repermit.Recipient{Email: "carl@example.com", Name: "=cmd", State: repermit.StateUnreached, Locale: "en"})
	put(2*redisstore.BucketSize+2, repermit.Recipient{Email: "dora@example.com", State: repermit.StateConfirmed,
		AnsweredAt: answered, LedgerID: "2-0"})
	put(2*redisstore.BucketSize+1, repermit.Recipient{Email: "eve@example.com", State: repermit.StateUnreached, Extra: map[string]string{"id": "7"}})
	return f
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("export is not CSV: %v\n%s", err, b)
	}
	return rows
}

func TestConfirmedWritesEachConfirmedAddressWithItsRecordHash(t *testing.T) {
	var b bytes.Buffer
	if err := Confirmed(context.Background(), &b, campaignStore(), "c1"); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, b.Bytes())
	if !reflect.DeepEqual(rows[0], ConfirmedHeader()) {
		t.Fatalf("header %q, want %q", rows[0], ConfirmedHeader())
	}
	at := answered.Format(time.RFC3339)
	h1, h2 := repermit.StoredRecordHash([]byte(`{"a":1}`)), repermit.StoredRecordHash([]byte(`{"b":2}`))
	want := [][]string{
		{"anna@example.com", "Anna", "", "de", "news;events", at, h1},
		{"dora@example.com", "", "", "", "", at, h2},
	}
	got := rows[1:]
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d (the expired, unreached and erased left out):\n%q", len(got), len(want), got)
	}
	for i := range want {
		attrs := got[i][2]
		got[i][2] = ""
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("row %d = %q, want %q", i+1, got[i], want[i])
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(attrs), &m); err != nil {
			t.Fatalf("row %d: attributes %q: %v", i+1, attrs, err)
		}
		if m["consent_record_hash"] != want[i][6] || m["confirmed_at"] != at || m["repermit_campaign"] != "c1" {
			t.Errorf("row %d: attributes %v lack the proof of %q", i+1, m, want[i][0])
		}
	}
}

func TestConfirmedKeepsTheExtraColumnsWithoutOverwritingTheProof(t *testing.T) {
	f := campaignStore()
	f.recipients[0].Extra = map[string]string{"plan": "pro", "consent_record_hash": "forged"}
	var b bytes.Buffer
	if err := Confirmed(context.Background(), &b, f, "c1"); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(readCSV(t, b.Bytes())[1][2]), &m); err != nil {
		t.Fatal(err)
	}
	if m["plan"] != "pro" || m["consent_record_hash"] != repermit.StoredRecordHash([]byte(`{"a":1}`)) {
		t.Errorf("attributes %v: want plan=pro and the record's own hash", m)
	}
}

func TestUnreachedWritesOnlyTheNeverMailedAsANewList(t *testing.T) {
	var b bytes.Buffer
	if err := Unreached(context.Background(), &b, campaignStore(), "c1"); err != nil {
		t.Fatal(err)
	}
	got := readCSV(t, b.Bytes())
	want := [][]string{
		UnreachedHeader(),
		{"carl@example.com", "'=cmd", "en", "{}"},
		{"eve@example.com", "", "", `{"id":"7"}`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("unreached export\n got %q\nwant %q", got, want)
	}
}

func TestSuppressedIncludesEntriesStillQueued(t *testing.T) {
	f := campaignStore()
	f.suppressed = []redisstore.SuppressionEntry{
		{Hash: "h1", Reason: "unsubscribed", At: answered, Campaign: "c1"},
		{Hash: "h9", Reason: "bounced", At: answered, Campaign: "other"},
	}
	f.pending = []redisstore.SuppressionEntry{{Hash: "h2", Reason: "expired", At: answered, Campaign: "c1"}}
	var b bytes.Buffer
	if err := Suppressed(context.Background(), &b, f, "c1"); err != nil {
		t.Fatal(err)
	}
	at := answered.Format(time.RFC3339)
	want := [][]string{SuppressedHeader(), {"h1", "unsubscribed", at}, {"h2", "expired", at}}
	if got := readCSV(t, b.Bytes()); !reflect.DeepEqual(got, want) {
		t.Errorf("suppressed export\n got %q\nwant %q", got, want)
	}
}

func TestExportsRefuseAnUnknownCampaignAndWriteNothing(t *testing.T) {
	for name, fn := range map[string]func(context.Context, *bytes.Buffer, Store, string) error{
		"confirmed":  func(ctx context.Context, b *bytes.Buffer, s Store, id string) error { return Confirmed(ctx, b, s, id) },
		"unreached":  func(ctx context.Context, b *bytes.Buffer, s Store, id string) error { return Unreached(ctx, b, s, id) },
		"suppressed": func(ctx context.Context, b *bytes.Buffer, s Store, id string) error { return Suppressed(ctx, b, s, id) },
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			err := fn(context.Background(), &b, campaignStore(), "nope")
			if repermit.ErrorCode(err) != repermit.ENOTFOUND {
				t.Errorf("error %v, want %s", err, repermit.ENOTFOUND)
			}
			if b.Len() != 0 {
				t.Errorf("wrote %q for an unknown campaign", b.String())
			}
		})
	}
}

func TestExportStopsOnAStoreFailure(t *testing.T) {
	f := campaignStore()
	f.bucketErr = errors.New("connection reset")
	var b bytes.Buffer
	if err := Confirmed(context.Background(), &b, f, "c1"); !errors.Is(err, f.bucketErr) {
		t.Errorf("error %v, want the store's", err)
	}
}
