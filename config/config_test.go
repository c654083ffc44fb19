package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
)

// now is before every timestamp in testdata, so that only past.yaml has a
// deadline in the past.
var now = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// want is one expected problem: its line and a part of its message.
type want struct {
	line int
	msg  string
}

func TestLoadProblems(t *testing.T) {
	tests := []struct {
		file string
		want []want
	}{
		{"empty.yaml", []want{{0, "the file is empty"}}},
		{"comment_only.yaml", []want{{0, "the file is empty"}}},
		{"missing-file.yaml", []want{{0, "cannot read campaign file: open: no such file or directory"}}},
		{"list.yaml", []want{{1, "a campaign file is a mapping of keys"}}},
		{"webhooks.yaml", []want{
			{15, `webhooks[1].url: "ftp://crm.acme.example" is not an absolute http(s) URL`},
			{16, `webhooks[1].secret: must be "whsec_" and the base64 of 24 to 64 random bytes`},
			{17, "webhooks[2]: missing secret"},
			{18, "webhooks[3]: must be a mapping {url, secret}"},
		}},
		{"syntax.yaml", []want{{3, "YAML syntax: "}}},
		{"two_docs.yaml", []want{{12, "a second YAML document"}}},
		{"duplicate.yaml", []want{{7, `duplicate key "subject" (first at line 3)`}}},
		{"unknown_key.yaml", []want{
			{1, `missing required key "subject"`},
			{3, `unknown key "subjct" (did you mean "subject"?)`},
			{7, `unknown key "colour" (known keys: id, from,`},
			{9, `unknown key "rate.per_secnd" (did you mean "per_second"?)`},
			{10, `unknown key "Deadline" (did you mean "deadline"?)`},
		}},
		{"types.yaml", []want{
			{1, "id: must be a single value, not a list"},
			{2, "from: must be a single value, not a mapping"},
			{3, "subject: must not be empty"},
			{7, `reminders: must be a list of durations like [7d, 21d], not the value "7d"`},
			{8, `rate: must be a mapping (per_second: …, per_domain_per_minute: …), not the value "fast"`},
			{9, "topics: must be a list like [yoga, events], not a mapping"},
		}},
		{"many.yaml", []want{
			{1, `id: "Spring Campaign" may only contain a-z, 0-9 and '-'`},
			{2, `from: "not an address" is not an address`},
			{3, "subject: must be one line"},
			{4, `recipients: "nowhere.csv" does not exist (looked in `},
			{5, `suppression: "tpl" is a directory, not a file`},
			{6, "must use https (http is allowed only for localhost)"},
			{6, "must not have a query (?…) or fragment (#…)"},
			{8, `deadline: "30x" is not a duration (use e.g. 30d, 12h, 90m)`},
			{9, "reminders: 7d is not after the previous reminder (7d)"},
			{9, `reminders: "-1h" must be a positive duration`},
			{9, `reminders: "3q" is not a duration`},
			{11, "rate.per_second: -5 is negative"},
			{12, `rate.per_domain_per_minute.default: "many" is not a whole number`},
			{12, `rate.per_domain_per_minute: "not a domain" is not a domain name`},
			{12, `duplicate key "GMAIL.com" in rate.per_domain_per_minute (first at line 12)`},
			{13, `topics: "Yoga" may only contain`},
			{13, `topics: "yoga" is listed twice (first at line 13)`},
			{14, `templates: "recipients.csv" is not a directory`},
			{15, `retention: "forever" is not a duration`},
			{16, `list_unsubscribe_mailto: invalid address "nobody@"`},
		}},
		{"order.yaml", []want{
			{10, "reminders: 1d is not after the previous reminder (2d)"},
			{11, "reminders: 10d is not before the deadline"},
			{12, "reminders: 12d is not before the deadline"},
		}},
		{"past.yaml", []want{
			{7, "deadline: 2025-12-31T00:00:00Z is not after start_at (2026-01-01T00:00:00Z)"},
			{7, "deadline: 2025-12-31T00:00:00Z is in the past"},
		}},
		{"bad_start.yaml", []want{
			{6, `start_at: "2026-12-01 09:00" is not an RFC 3339 timestamp`},
			{7, `deadline: "2026-13-01T00:00:00Z" is not an RFC 3339 timestamp`},
		}},
		{"many_topics.yaml", []want{{8, "topics: 21 topics, at most 20 are allowed"}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			f, err := Load(path, now)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", f)
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error %T %v is not Problems", err, err)
			}
			if code := repermit.ErrorCode(err); code != repermit.EINVALID {
				t.Errorf("ErrorCode = %q, want %q", code, repermit.EINVALID)
			}
			if len(ps) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(ps), len(tt.want), err)
			}
			for i := 0; i < len(ps) && i < len(tt.want); i++ {
				p, w := ps[i], tt.want[i]
				if p.File != path || p.Line != w.line || !strings.Contains(p.Msg, w.msg) {
					t.Errorf("problem %d = %q, want line %d with %q", i, p, w.line, w.msg)
				}
			}
		})
	}
}

func TestLoadGood(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.FixedZone("", 3600))
	f, err := Load("testdata/good.yaml", now)
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	want := &File{
		Path: "testdata/good.yaml",
		Campaign: repermit.Campaign{
			ID:             "spring-2026",
			From:           "ACME News <news@acme.example>",
			Subject:        "Do you still want ACME News?",
			ConfirmBaseURL: "http://127.0.0.1:8080/consent",
			StartAt:        start,
			Deadline:       start.Add(30 * day),
			Reminders:      []time.Duration{7 * day, 21*day + 12*time.Hour, 29*day + 23*time.Hour},
			Rate: repermit.Rate{
				PerSecond:          50,
				PerDomainPerMinute: map[string]int{"default": 600, "gmail.com": 300, "xn--bcher-kva.example": 10},
			},
			Topics:            []string{"yoga", "events"},
			TemplatesDir:      filepath.Join(dir, "tpl"),
			Retention:         90 * day,
			UnsubscribeMailto: "unsubscribe@acme.example",
			Subjects:          repermit.Text{"": "Do you still want ACME News?"},
			DefaultLocale:     "en",
			Controller: repermit.Controller{
				Name: "ACME Handels GmbH", Address: "Hauptstraße 1, 10115 Berlin, Germany",
				Contact: "privacy@acme.example", PrivacyURL: "https://acme.example/privacy",
			},
		},
		RecipientsPath:  filepath.Join(dir, "sub", "people.csv"),
		SuppressionPath: filepath.Join(dir, "suppression.csv"),
	}
	if !f.Campaign.StartAt.Equal(start) || !f.Campaign.Deadline.Equal(want.Campaign.Deadline) {
		t.Errorf("StartAt %v, Deadline %v; want %v, %v", f.Campaign.StartAt, f.Campaign.Deadline, start, want.Campaign.Deadline)
	}
	// Times compared above with Equal; their locations may differ in form.
	f.Campaign.StartAt, f.Campaign.Deadline = want.Campaign.StartAt, want.Campaign.Deadline
	f.texts = nil
	// The rate is a block mapping: its value starts on the line after
	// "rate:".
	if f.deadlineLine != 9 || f.rateLine != 12 {
		t.Errorf("deadline and rate lines %d, %d; want 9, 12", f.deadlineLine, f.rateLine)
	}
	f.deadlineLine, f.rateLine = 0, 0
	if !reflect.DeepEqual(f, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", f, want)
	}
}

func TestLoadDefaults(t *testing.T) {
	tests := []struct {
		file         string
		start        time.Time
		deadline     time.Time
		reminders    []time.Duration
		suppressions string
	}{
		// start_at defaults to now; durations as short as seconds work,
		// so tests and the demo can compress time.
		{file: "minimal.yaml", start: now, deadline: now.Add(3 * time.Second)},
		{
			file:      "timestamp_deadline.yaml",
			start:     time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
			deadline:  time.Date(2026, 12, 31, 17, 0, 0, 0, time.UTC),
			reminders: []time.Duration{time.Hour},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := Load(filepath.Join("testdata", tt.file), now)
			if err != nil {
				t.Fatal(err)
			}
			c := f.Campaign
			if !c.StartAt.Equal(tt.start) || !c.Deadline.Equal(tt.deadline) {
				t.Errorf("start %v deadline %v, want %v %v", c.StartAt, c.Deadline, tt.start, tt.deadline)
			}
			if !reflect.DeepEqual(c.Reminders, tt.reminders) {
				t.Errorf("reminders %v, want %v", c.Reminders, tt.reminders)
			}
			if f.SuppressionPath != "" || c.TemplatesDir != "" || c.Rate.PerSecond != 0 || c.Rate.PerDomainPerMinute != nil || c.Topics != nil {
				t.Errorf("optional values set: %+v", f)
			}
		})
	}
}

func TestLoadExample(t *testing.T) {
	f, err := Load("examples/newsletter.yaml", now)
	if err != nil {
		t.Fatal(err)
	}
	if f.Campaign.ID != "newsletter-reconsent-2026" || f.SuppressionPath == "" || len(f.Campaign.Reminders) != 2 {
		t.Errorf("unexpected example campaign: %+v", f)
	}
	for _, p := range []string{f.RecipientsPath, f.SuppressionPath} {
		if _, err := os.Stat(p); err != nil || !filepath.IsAbs(p) {
			t.Errorf("path %q: absolute %v, stat %v", p, filepath.IsAbs(p), err)
		}
	}
}

func TestConfirmBaseURL(t *testing.T) {
	tests := []struct {
		in, want string
		err      string
	}{
		{in: "https://consent.acme.example", want: "https://consent.acme.example"},
		{in: "https://consent.acme.example/", want: "https://consent.acme.example"},
		{in: "https://acme.example/consent/", want: "https://acme.example/consent"},
		{in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{in: "http://localhost:8080/", want: "http://localhost:8080"},
		{in: "http://[::1]:8080", want: "http://[::1]:8080"},
		{in: "http://acme.example", err: "must use https"},
		{in: "http://127.0.0.1.nip.io", err: "must use https"},
		{in: "ftp://acme.example", err: "must use https"},
		{in: "consent.acme.example", err: "not an absolute URL"},
		{in: "/c", err: "not an absolute URL"},
		{in: "https://acme.example/?utm=1", err: "must not have a query"},
		{in: "https://acme.example/?", err: "must not have a query"},
		{in: "https://acme.example/#top", err: "or fragment"},
		{in: "https://user:pw@acme.example", err: "user name or password"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			l := &loader{file: "c.yaml"}
			got := l.baseURL(4, tt.in)
			if tt.err == "" {
				if len(l.problems) != 0 || got != tt.want {
					t.Errorf("baseURL(%q) = %q, problems %v; want %q", tt.in, got, l.problems, tt.want)
				}
				return
			}
			if len(l.problems) != 1 || l.problems[0].Line != 4 || !strings.Contains(l.problems[0].Msg, tt.err) {
				t.Errorf("baseURL(%q) problems %v, want one at line 4 with %q", tt.in, l.problems, tt.err)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "30d", want: 30 * day},
		{in: "1d12h", want: day + 12*time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "3s", want: 3 * time.Second},
		{in: "90m", want: 90 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "0", want: 0},
		{in: " 7d ", want: 7 * day},
		{in: "-1d", want: -day},
		{in: "", err: true},
		{in: "30", err: true},
		{in: "30x", err: true},
		{in: "d", err: true},
		{in: "1h2d", err: true},
		{in: "1d-3h", err: true},
		{in: "1..5d", err: true},
		{in: "1d1d", err: true},
		{in: "200000d", err: true},
		{in: "106751d23h47m16s999ms", err: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %v, want error", tt.in, got)
			} else if !strings.Contains(err.Error(), "is not a duration (use e.g. 30d, 12h, 90m)") {
				t.Errorf("ParseDuration(%q) error %q", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestProblemsError(t *testing.T) {
	ps := Problems{{File: "c.yaml", Line: 0, Msg: "unreadable"}, {File: "c.yaml", Line: 7, Msg: "deadline: bad"}}
	if got, want := ps.Error(), "c.yaml: unreadable\nc.yaml:7: deadline: bad"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var err error = ps
	if repermit.ErrorCode(err) != repermit.EINVALID || repermit.ErrorMessage(err) != ps.Error() {
		t.Errorf("code %q message %q", repermit.ErrorCode(err), repermit.ErrorMessage(err))
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"subjct", "subject"},
		{"dealine", "deadline"},
		{"reminder", "reminders"},
		{"confirm_base_ur", "confirm_base_url"},
		{"list_unsubscribe", "list_unsubscribe_mailto"},
		{"confirm", "confirm_base_url"},
		{"ID", "id"},
		{"colour", ""},
		{"x", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, keys); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestInfeasibleCampaignIsRefusedWithItsLineAndAFit: a campaign whose rate
// cannot mail everyone min_answer_window before the deadline is refused on
// the rate's line (or the deadline's), naming the projected finish and what
// would fit; one that can is accepted.
func TestInfeasibleCampaignIsRefusedWithItsLineAndAFit(t *testing.T) {
	ten := map[string]int64{}
	for i := 0; i < 20; i++ {
		ten[fmt.Sprintf("d%d.example", i)] = 500
	}
	tests := []struct {
		name      string
		yaml      string
		perDomain map[string]int64
		want      []string // in the problem; none: feasible
	}{
		{"10,000 at 20/s in 1m", "deadline: 1m\nrate: {per_second: 20}\n", ten,
			[]string{"campaign.yaml:8: rate:", "10000 initial mails", "8m20s after the start", "rate.per_second: 334", "min_answer_window 30s"}},
		{"10,000 at 400/s in 1m", "deadline: 1m\nrate: {per_second: 400}\n", ten, nil},
		{"explicit window", "deadline: 1m\nmin_answer_window: 50s\nrate: {per_second: 400}\n", ten,
			[]string{"campaign.yaml:9: rate:", "rate.per_second: 1000", "min_answer_window 50s"}},
		{"a domain limit binds", "deadline: 2h\nrate: {per_second: 1000, per_domain_per_minute: {gmail.com: 10}}\n", map[string]int64{"gmail.com": 3000, "example.com": 10},
			[]string{"rate.per_domain_per_minute for gmail.com", "rate.per_domain_per_minute gmail.com: 50", "5h after the start"}},
		{"reminders take their share", "deadline: 40s\nreminders: [5s]\nrate: {per_second: 10}\n", map[string]int64{"example.com": 200},
			[]string{"campaign.yaml:9: rate:", "25s after the start", "rate.per_second: 14"}},
		{"no rate, no line of its own", "deadline: 30d\n", ten, nil},
		// 10,000 in waves of 100, 250, 625, 1562, 3905, 3558: 6 waves, 5
		// observation times of 1h, 8m20s of sending at 20/s.
		{"waves leave the window", "deadline: 7h\nmin_answer_window: 1h\nrate: {per_second: 20}\nwaves: {pilot: 100, grow: 2.5, observe: 1h}\n", ten, nil},
		{"waves' observation eats the window", "deadline: 6h\nmin_answer_window: 1h\nrate: {per_second: 20}\nwaves: {pilot: 100, grow: 2.5, observe: 1h}\n", ten,
			[]string{"campaign.yaml:10: waves:", "10000 recipients make 6 waves (pilot 100)", "5 observation times of 1h", "8m20s of sending",
				"at 2026-12-01T14:08:20Z, 51m40s before the deadline", "a deadline of at least 6h8m20s after the start"}},
		{"fixed waves", "deadline: 1d\nmin_answer_window: 1h\nwaves: {pilot: 1000, grow: 3000, observe: 8h}\n", ten,
			[]string{"campaign.yaml:9: waves:", "make 4 waves", "3 observation times of 8h", "1d1h after the start"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			body := "id: feasible\nfrom: news@acme.example\nsubject: s\nrecipients: r.csv\nconfirm_base_url: https://x.example\n" +
				"controller: {name: ACME, address: Berlin, contact: privacy@acme.example, privacy_url: https://acme.example/privacy}\n" + tt.yaml
			path := filepath.Join(dir, "campaign.yaml")
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "r.csv"), []byte("email\na@example.com\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
			f, err := Load(path, now)
			if err != nil {
				t.Fatal(err)
			}
			err = f.CheckFeasible(tt.perDomain, now)
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("refused a feasible campaign: %v", err)
				}
				return
			}
			if repermit.ErrorCode(err) != repermit.EINVALID {
				t.Fatalf("err = %v, want EINVALID", err)
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("problem lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}
