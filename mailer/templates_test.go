package mailer

import (
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
)

func TestLocaleSelection(t *testing.T) {
	tpl := loadTemplates(t, "")
	tests := []struct {
		locale      string
		kind        Kind
		wantText    string
		wantSubject string
		german      bool
	}{
		{"en", Initial, "Do you want to stay on our list?", "Do you still want ACME News?", false},
		{"", Initial, "Do you want to stay on our list?", "Do you still want ACME News?", false},
		{"fr", Initial, "Do you want to stay on our list?", "Do you still want ACME News?", false},
		{"de", Initial, "Möchten Sie auf unserer Liste bleiben?", "Do you still want ACME News?", true},
		{"de-AT", Initial, "Möchten Sie auf unserer Liste bleiben?", "Do you still want ACME News?", true},
		{"DE_ch", Reminder(1), "Bisher haben wir keine Antwort", "Erinnerung: Do you still want ACME News?", true},
		{"en-GB", Reminder(3), "We have not heard from you yet", "Reminder: Do you still want ACME News?", false},
	}
	for _, tt := range tests {
		t.Run(tt.locale+"/"+tt.kind.String(), func(t *testing.T) {
			r, err := tpl.render(testData(testCampaign(), testRecipient(1, tt.locale)), tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.text, tt.wantText) {
				t.Errorf("text lacks %q:\n%s", tt.wantText, r.text)
			}
			if r.subject != tt.wantSubject {
				t.Errorf("subject %q, want %q", r.subject, tt.wantSubject)
			}
			// Both parts come from one locale.
			if strings.Contains(r.html, `lang="de"`) != tt.german {
				t.Errorf("HTML is not in the language of the text:\n%s", r.html)
			}
			if !strings.Contains(r.html, "<title>"+tt.wantSubject+"</title>") {
				t.Errorf("HTML title is not the subject %q", tt.wantSubject)
			}
		})
	}
}

func TestLocaleChain(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"de-AT", "de-at de en"},
		{"de_AT", "de-at de en"},
		{"en", "en"},
		{"", "en"},
		{" zh-Hant-TW ", "zh-hant-tw zh-hant zh en"},
	}
	for _, tt := range tests {
		if got := strings.Join(localeChain(tt.in), " "); got != tt.want {
			t.Errorf("localeChain(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDeadlineNamesTheExactMoment(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		deadline time.Time
		locale   string
		want     string
	}{
		{time.Date(2026, 12, 31, 9, 0, 0, 0, berlin), "en", "December 31, 2026 at 09:00 (UTC+01:00)"},
		{time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), "en", "January 1, 2027 at 00:00 (UTC+00:00)"},
		{time.Date(2026, 3, 2, 9, 30, 0, 0, berlin), "de-AT", "2. März 2026 um 09:30 Uhr (UTC+01:00)"},
		{time.Date(2026, 3, 2, 9, 0, 0, 0, berlin), "fr", "2026-03-02 09:00 (UTC+01:00)"},
		{time.Time{}, "en", ""},
	}
	for _, tt := range tests {
		if got := formatDeadline(tt.deadline, tt.locale); got != tt.want {
			t.Errorf("formatDeadline(%v, %q) = %q, want %q", tt.deadline, tt.locale, got, tt.want)
		}
	}
}

func TestDefaultTemplatesPassCheck(t *testing.T) {
	if err := loadTemplates(t, "").Check(); err != nil {
		t.Fatal(err)
	}
}

func TestOverrideDirReplacesFilesOneByOne(t *testing.T) {
	tpl := loadTemplates(t, "testdata/override")
	if err := tpl.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	c := testCampaign()

	en := sendAndReceive(t, tpl, testData(c, testRecipient(1, "en")), Initial)
	if !strings.Contains(en.parts["text/plain"], "OVERRIDDEN-TEXT for ada@example.org at Analytical Engines") {
		t.Errorf("text part is not the override:\n%s", en.parts["text/plain"])
	}
	if !strings.Contains(en.parts["text/html"], "Yes, keep me subscribed") {
		t.Errorf("HTML part is not the default although the override has none:\n%s", en.parts["text/html"])
	}

	fr := sendAndReceive(t, tpl, testData(c, testRecipient(1, "fr-CA")), Initial)
	if !strings.Contains(fr.parts["text/plain"], "Oui, je reste") || !strings.Contains(fr.parts["text/html"], "Oui, je reste") {
		t.Errorf("French recipient did not get the French templates: %v", fr.parts)
	}
	if got := decodeHeader(t, fr.header, "Subject"); got != "Voulez-vous rester ?" {
		t.Errorf("Subject = %q, want the template's", got)
	}

	// A kind the override does not touch keeps the defaults.
	rem := sendAndReceive(t, tpl, testData(c, testRecipient(1, "en")), Reminder(1))
	if !strings.Contains(rem.parts["text/plain"], "We have not heard from you yet") {
		t.Errorf("reminder is not the default:\n%s", rem.parts["text/plain"])
	}
}

func TestBadTemplatesAreRefused(t *testing.T) {
	tests := []struct {
		dir      string
		atLoad   bool
		wantFile string
		wantMsg  string
	}{
		{"testdata/nolink", false, "testdata/nolink/initial.en.txt", "no confirm link"},
		{"testdata/htmlonly", false, "testdata/htmlonly/initial.fr.html", "no text part"},
		{"testdata/badname", true, "testdata/badname/intial.en.txt", "unexpected template name"},
		{"testdata/badsyntax", true, "testdata/badsyntax/initial.en.txt", "unclosed action"},
		{"testdata/missing", true, "testdata/missing", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			tpl, err := LoadTemplates(tt.dir)
			if !tt.atLoad {
				if err != nil {
					t.Fatalf("LoadTemplates: %v", err)
				}
				err = tpl.Check()
			}
			if err == nil {
				t.Fatal("no error")
			}
			if code := repermit.ErrorCode(err); code != repermit.EINVALID {
				t.Errorf("code %q, want %q", code, repermit.EINVALID)
			}
			msg := repermit.ErrorMessage(err)
			if !strings.Contains(msg, tt.wantFile) || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not name %s and say %q", msg, tt.wantFile, tt.wantMsg)
			}
		})
	}
}

func TestNewDataLinks(t *testing.T) {
	c := testCampaign()
	c.Topics = []string{"yoga", "events"}
	d := NewData(c, testRecipient(1, "en"), "https://x.example/c/T", "https://x.example/u/T")
	if d.ConfirmYesURL != "https://x.example/c/T?answer=yes" || d.ConfirmNoURL != "https://x.example/c/T?answer=no" {
		t.Errorf("answer links %q, %q", d.ConfirmYesURL, d.ConfirmNoURL)
	}
	if d.Sender != "ACME News" {
		t.Errorf("Sender = %q", d.Sender)
	}
	d = NewData(c, testRecipient(1, "en"), "https://x.example/c?t=T", "https://x.example/u/T")
	if d.ConfirmYesURL != "https://x.example/c?t=T&answer=yes" {
		t.Errorf("answer link with a query: %q", d.ConfirmYesURL)
	}
	r, err := loadTemplates(t, "").render(d, Initial)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.text, "yoga, events") || !strings.Contains(r.html, "yoga, events") {
		t.Errorf("topics missing from the mail")
	}
}
