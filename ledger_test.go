package repermit_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
)

// TestCanonicalIsJSONMarshal: a record's canonical bytes are exactly
// encoding/json's for it, whichever way Canonical gets there: escapes,
// non-ASCII, empty and missing lists, times of every precision, zone
// and year.
func TestCanonicalIsJSONMarshal(t *testing.T) {
	at := time.Date(2026, 11, 29, 14, 56, 10, 123_000_000, time.UTC)
	base := repermit.ConsentRecord{
		Seq: 42, Campaign: "spring-2026", Recipient: 1234, Subject: strings.Repeat("ab", 32),
		Answer: repermit.StateConfirmed, Topics: []string{"yoga", "events"}, At: at,
		IP: "203.0.113.0", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0", Wording: strings.Repeat("0f", 32),
	}
	cases := []func(r *repermit.ConsentRecord){
		func(r *repermit.ConsentRecord) {},
		func(r *repermit.ConsentRecord) { r.Topics, r.IP, r.UserAgent, r.Wording = nil, "", "", "" },
		func(r *repermit.ConsentRecord) { r.Topics, r.TopicsBefore = []string{}, []string{} },
		func(r *repermit.ConsentRecord) { r.TopicsBefore = []string{"news"}; r.Answer = repermit.StateDeclined },
		func(r *repermit.ConsentRecord) { r.Seq, r.Recipient = -1, 0 },
		func(r *repermit.ConsentRecord) { r.At = time.Time{} },
		func(r *repermit.ConsentRecord) { r.At = at.Truncate(time.Second) },
		func(r *repermit.ConsentRecord) { r.At = at.Add(456_789) },
		func(r *repermit.ConsentRecord) { r.At = at.In(time.FixedZone("CET", 3600)) },
		func(r *repermit.ConsentRecord) { r.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		func(r *repermit.ConsentRecord) { r.At = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		func(r *repermit.ConsentRecord) { r.UserAgent = `Mail <client> & "friends" \ back` },
		func(r *repermit.ConsentRecord) { r.UserAgent = "tab\there\nnewline\x00\x7f\u2028" },
		func(r *repermit.ConsentRecord) { r.UserAgent = "Müller ☃ \xff\xfe" },
		func(r *repermit.ConsentRecord) { r.Topics = []string{"a<b", "c&d"} },
		func(r *repermit.ConsentRecord) { r.UserAgent = "AT&T" },
		func(r *repermit.ConsentRecord) { r.UserAgent = "a>b" },
		func(r *repermit.ConsentRecord) { r.IP = `"` },
		func(r *repermit.ConsentRecord) { r.Wording = `\` },
		func(r *repermit.ConsentRecord) { r.TopicsBefore = []string{"\x7f"} },
		func(r *repermit.ConsentRecord) { r.Campaign = "ünïcødé" },
		func(r *repermit.ConsentRecord) { r.IP = "2001:db8::" },
	}
	for i, change := range cases {
		r := base
		change(&r)
		check(t, i, r)
	}
}

func FuzzCanonicalIsJSONMarshal(f *testing.F) {
	f.Add("spring", "Mozilla/5.0", "yoga", int64(1_764_428_170_123), int64(7))
	f.Add("a\"b", "<script>", "\u2028", int64(-62_135_596_800_000), int64(-3))
	f.Add("", "", "", int64(253_402_300_800_000), int64(0))
	f.Fuzz(func(t *testing.T, campaign, ua, topic string, ms, seq int64) {
		r := repermit.ConsentRecord{Seq: seq, Campaign: campaign, Recipient: seq * 3, Subject: "s", Answer: repermit.StateConfirmed,
			Topics: []string{topic}, TopicsBefore: []string{ua}, At: time.UnixMilli(ms), IP: topic, UserAgent: ua, Wording: campaign}
		check(t, 0, r)
	})
}

func check(t *testing.T, i int, r repermit.ConsentRecord) {
	t.Helper()
	u := r
	u.At = u.At.UTC()
	want, werr := json.Marshal(u)
	var got []byte
	func() {
		defer func() {
			if p := recover(); p != nil && werr == nil {
				t.Errorf("case %d: Canonical panicked (%v) where json.Marshal gave %s", i, p, want)
			}
		}()
		got = r.Canonical()
	}()
	if werr == nil && !bytes.Equal(got, want) {
		t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
	}
}
