package launch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/launch"
	"github.com/repermit/repermit/recipients"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

var now = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// writeCampaign writes a campaign file and its CSV into a temp dir.
func writeCampaign(t *testing.T, id, yamlExtra, csv string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "recipients.csv"), []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`id: %s
from: "ACME News <news@acme.example>"
subject: "Do you still want ACME News?"
recipients: recipients.csv
confirm_base_url: https://consent.acme.example
deadline: 30d
controller:
  name: ACME Handels GmbH
  address: "Hauptstraße 1, 10115 Berlin, Germany"
  contact: privacy@acme.example
  privacy_url: https://acme.example/privacy
%s`, id, yamlExtra)
	path := filepath.Join(dir, "campaign.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// bigCSV has n rows, every 100th invalid and every 100th (offset 50) a
// duplicate of the row before it.
func bigCSV(n int) (csv string, invalid, dup int) {
	var b strings.Builder
	b.WriteString("email,name,locale\n")
	for i := 0; i < n; i++ {
		switch {
		case i%100 == 0:
			fmt.Fprintf(&b, "not-an-address-%d,Broken,en\n", i)
			invalid++
		case i%100 == 50:
			fmt.Fprintf(&b, "User%d@Example.COM,Dup,en\n", i-1)
			dup++
		default:
			fmt.Fprintf(&b, "user%d@example.com,User %d,de\n", i, i)
		}
	}
	return b.String(), invalid, dup
}

type recordingScheduler struct {
	scheduled []repermit.Campaign
	fail      error
}

func (r *recordingScheduler) Schedule(_ context.Context, c repermit.Campaign) error {
	r.scheduled = append(r.scheduled, c)
	return r.fail
}

func dump(t *testing.T, r *redistest.Redis) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := make(map[string]string)
	for _, k := range r.Keys(t) {
		switch r.Client.Type(ctx, k).Val() {
		case "hash":
			out[k] = fmt.Sprint(r.Client.HGetAll(ctx, k).Val())
		case "string":
			out[k] = r.Client.Get(ctx, k).Val()
		default:
			out[k] = r.Client.Type(ctx, k).Val()
		}
	}
	return out
}

func TestLaunch100kRowsCountsExactlyAndRelaunchChangesNothing(t *testing.T) {
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	csv, invalid, dup := bigCSV(100_000)
	path := writeCampaign(t, "big", "", csv)
	sched := &recordingScheduler{}

	rep, err := launch.Launch(ctx, path, st, sched, launch.Options{Now: now})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	want := repermit.ImportResult{Campaign: "big", Imported: int64(100_000 - invalid - dup), SkippedInvalid: int64(invalid), SkippedDuplicate: int64(dup)}
	if rep.ImportResult != want {
		t.Errorf("result = %+v, want %+v", rep.ImportResult, want)
	}
	if len(sched.scheduled) != 1 || sched.scheduled[0].Seq == 0 {
		t.Errorf("scheduled %+v, want the campaign once with its sequence number", sched.scheduled)
	}
	stats, err := st.Stats(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if stats.Counts.Total() != want.Imported || stats.Counts[repermit.StatePending] != want.Imported {
		t.Errorf("counts %v do not add up to %d", stats.Counts, want.Imported)
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "recipients.csv:2: ") {
		t.Errorf("warnings do not name CSV line 2 (the first invalid row): %v", rep.Warnings[:3])
	}

	before := dump(t, r)
	_, err = launch.Launch(ctx, path, st, sched, launch.Options{Now: now})
	if repermit.ErrorCode(err) != repermit.ECONFLICT {
		t.Fatalf("second launch: err = %v, want ECONFLICT", err)
	}
	after := dump(t, r)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Error("the refused second launch changed Redis")
	}
}

func TestBrokenCampaignFileReportsEveryLineAndTouchesNothing(t *testing.T) {
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	path := writeCampaign(t, "broken", "reminders: [7x]\nsubjct: typo\nrate:\n  per_second: -1\n", "email\na@example.com\n")
	_, err := launch.Launch(context.Background(), path, st, nil, launch.Options{Now: now})
	if repermit.ErrorCode(err) != repermit.EINVALID {
		t.Fatalf("err = %v, want EINVALID", err)
	}
	msg := err.Error()
	for _, want := range []string{"campaign.yaml:12:", "campaign.yaml:13:", "campaign.yaml:15:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
	if keys := r.Keys(t); len(keys) != 0 {
		t.Errorf("Redis touched: %v", keys)
	}
}

func TestFatalCSVProblemLateInTheFileLeavesNothing(t *testing.T) {
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	csv, _, _ := bigCSV(20_000)
	csv += "x" + strings.Repeat("y", 2<<20) + "@example.com\n"
	path := writeCampaign(t, "late", "", csv)
	_, err := launch.Launch(context.Background(), path, st, nil, launch.Options{Now: now})
	if repermit.ErrorCode(err) != repermit.EINVALID || !strings.Contains(err.Error(), "recipients.csv:20002") {
		t.Fatalf("err = %v, want EINVALID naming line 20002", err)
	}
	if keys := r.Keys(t); len(keys) != 0 {
		t.Errorf("Redis touched: %v", keys)
	}
}

func TestFailedSchedulingRollsBackTheImport(t *testing.T) {
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	csv, _, _ := bigCSV(1000)
	path := writeCampaign(t, "unscheduled", "", csv)
	boom := errors.New("queue down")
	_, err := launch.Launch(context.Background(), path, st, &recordingScheduler{fail: boom}, launch.Options{Now: now})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the scheduler's error", err)
	}
	for _, k := range r.Keys(t) {
		if !strings.HasSuffix(k, ":seq") {
			t.Errorf("key left behind: %s", k)
		}
	}
	if _, err := st.Campaign(context.Background(), "unscheduled"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("campaign still visible: %v", err)
	}
}

func TestSuppressedAddressesAreSkipped(t *testing.T) {
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	if err := st.AddSuppression(ctx, "declined", "older", now, repermit.AddressHash("b@example.com")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "supp.csv"), []byte("c@example.com\n"+repermit.AddressHash("d@example.com")+"\n"), 0o644)
	path := writeCampaign(t, "supp", "suppression: "+filepath.Join(dir, "supp.csv")+"\n", "email\na@example.com\nB@example.com\nc@example.com\nd@example.com\ne@example.com\n")
	rep, err := launch.Launch(ctx, path, st, nil, launch.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Imported != 2 || rep.SkippedSuppressed != 3 {
		t.Errorf("result %+v, want 2 imported and 3 suppressed", rep.ImportResult)
	}
	for i, want := range []string{"a@example.com", "e@example.com"} {
		got, err := st.Recipient(ctx, "supp", int64(i))
		if err != nil || got.Email != want {
			t.Errorf("recipient %d = %v, %v; want %s", i, got, err, want)
		}
	}
}

func TestValidateDoesNotNeedRedis(t *testing.T) {
	csv, invalid, dup := bigCSV(1000)
	path := writeCampaign(t, "check", "", csv)
	f, rep, err := launch.Validate(context.Background(), path, launch.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if f.Campaign.ID != "check" || rep.SkippedInvalid != int64(invalid) || rep.SkippedDuplicate != int64(dup) || rep.Imported != int64(1000-invalid-dup) {
		t.Errorf("report %+v", rep.ImportResult)
	}
}

// TestWavesPilotIsASampleOfEveryDomain launches a list sorted by domain
// (the first 500 rows one domain): with waves its pilot holds every domain
// in about its share, in an order that a second launch of the same file
// repeats; without waves the file's order stays.
func TestWavesPilotIsASampleOfEveryDomain(t *testing.T) {
	shares := []struct {
		domain string
		n      int
	}{{"gmail.example", 500}, {"yahoo.example", 300}, {"small.example", 150}, {"tiny.example", 50}}
	var b strings.Builder
	b.WriteString("email\n")
	for _, s := range shares {
		for i := range s.n {
			fmt.Fprintf(&b, "u%d@%s\n", i, s.domain)
		}
	}
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	order := func(id, waves string) []string {
		t.Helper()
		if _, err := launch.Launch(ctx, writeCampaign(t, id, waves, b.String()), st, nil, launch.Options{Now: now}); err != nil {
			t.Fatal(err)
		}
		var out []string
		for bkt := int64(0); bkt < redisstore.Buckets(1000); bkt++ {
			rs, err := st.Bucket(ctx, id, bkt)
			if err != nil {
				t.Fatal(err)
			}
			for _, rc := range rs {
				out = append(out, rc.Email)
			}
		}
		return out
	}
	const waves = "waves: {pilot: 100, grow: 2, observe: 1m}\n"
	got := order("waves-a", waves)
	if len(got) != 1000 {
		t.Fatalf("%d recipients", len(got))
	}
	pilot := map[string]int{}
	for _, e := range got[:100] {
		pilot[e[strings.IndexByte(e, '@')+1:]]++
	}
	for _, s := range shares {
		want := s.n / 10
		if n := pilot[s.domain]; n < want/2 || n > want*3/2+2 {
			t.Errorf("pilot holds %d of %s, want about %d: %v", n, s.domain, want, pilot)
		}
	}
	// The order depends on the campaign id and the addresses alone.
	var rows []recipients.Row
	for _, s := range shares {
		for i := range s.n {
			rows = append(rows, recipients.Row{Email: fmt.Sprintf("u%d@%s", i, s.domain)})
		}
	}
	launch.WaveOrder("waves-a", rows)
	for i, row := range rows {
		if got[i] != row.Email {
			t.Fatalf("recipient %d is %s, WaveOrder puts %s there", i, got[i], row.Email)
		}
	}
	if plain := order("plain", ""); plain[0] != "u0@gmail.example" || plain[999] != "u49@tiny.example" {
		t.Errorf("without waves the order changed: %s … %s", plain[0], plain[999])
	}
}

// TestSortsOnDiskKeepEveryRowOnce launches lists whose duplicate search and
// wave order do not fit in the sort memory (4 KiB, so hundreds of runs on
// disk): duplicates are found however far apart they are, the first row of
// an address stays with its own name, locale and extra columns, the wave
// order is WaveOrder's, and the sort files are gone afterwards, also after
// a failed launch.
func TestSortsOnDiskKeepEveryRowOnce(t *testing.T) {
	const n = 6000
	var b strings.Builder
	b.WriteString("email,name,locale,customer_id\n")
	var want []recipients.Row
	invalid, dup := 0, 0
	for i := range n {
		switch {
		case i%100 == 0:
			fmt.Fprintf(&b, "not-an-address-%d,Broken,en,\n", i)
			invalid++
		case i%100 == 50:
			// A duplicate of a row far back, in another run.
			fmt.Fprintf(&b, "USER%d@example.com,Dup,fr,X\n", i/2+1)
			dup++
		default:
			fmt.Fprintf(&b, "user%d@example.com,User %d,de,C%d\n", i, i, i)
			want = append(want, recipients.Row{Email: fmt.Sprintf("user%d@example.com", i), Name: fmt.Sprintf("User %d", i), Locale: "de",
				Extra: map[string]string{"customer_id": fmt.Sprintf("C%d", i)}})
		}
	}
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	for _, tc := range []struct{ id, waves string }{
		{"ondisk-plain", ""},
		{"ondisk-waves", "waves: {pilot: 100, grow: 2, observe: 1m}\n"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			tmp := t.TempDir()
			opt := launch.Options{Now: now, TempDir: tmp, SortMemory: 4096}
			rep, err := launch.Launch(ctx, writeCampaign(t, tc.id, tc.waves, b.String()), st, nil, opt)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Imported != int64(len(want)) || rep.SkippedInvalid != int64(invalid) || rep.SkippedDuplicate != int64(dup) {
				t.Fatalf("report %+v, want %d imported, %d invalid, %d duplicate", rep.ImportResult, len(want), invalid, dup)
			}
			order := slices.Clone(want)
			if tc.waves != "" {
				launch.WaveOrder(tc.id, order)
			}
			var all []*repermit.Recipient
			for bkt := int64(0); bkt < redisstore.Buckets(int64(len(want))); bkt++ {
				rs, err := st.Bucket(ctx, tc.id, bkt)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, rs...)
			}
			if len(all) != len(want) {
				t.Fatalf("%d recipients in Redis, want %d", len(all), len(want))
			}
			for i, w := range order {
				got := all[i]
				if got.Email != w.Email || got.Name != w.Name || got.Locale != w.Locale || got.Extra["customer_id"] != w.Extra["customer_id"] {
					t.Fatalf("recipient %d is %s %q %s %v, want %s %q %s %v", i, got.Email, got.Name, got.Locale, got.Extra, w.Email, w.Name, w.Locale, w.Extra)
				}
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("sort files left in TempDir: %v", left)
			}
			// A failed launch leaves no sort file either.
			_, err = launch.Launch(ctx, writeCampaign(t, tc.id+"-fails", tc.waves, b.String()), st, &recordingScheduler{fail: errors.New("boom")}, opt)
			if err == nil {
				t.Fatal("launch with a failing scheduler succeeded")
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("sort files left in TempDir after a failed launch: %v", left)
			}
		})
	}
}
