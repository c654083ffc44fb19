package mailer

import (
	"html"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/locale"
)

func TestLocaleSelection(t *testing.T) {
	tpl := loadTemplates(t, "")
	tests := []struct {
		locale, def string
		kind        Kind
		wantText    string
		wantSubject string
		wantLang    string
	}{
		{"en", "", Initial, "Do you want to stay on the list?", "Do you still want ACME News?", "en"},
		{"", "", Initial, "Do you want to stay on the list?", "Do you still want ACME News?", "en"},
		{"", "da", Initial, "Vil du blive på listen?", "Vil du fortsat modtage ACME Nyheder?", "da"},
		{"pt-BR", "da", Initial, "Vil du blive på listen?", "Vil du fortsat modtage ACME Nyheder?", "da"},
		{"de", "", Initial, "Möchten Sie auf der Liste bleiben?", "Möchten Sie ACME-Nachrichten weiter erhalten?", "de"},
		{"de-AT", "da", Initial, "Möchten Sie auf der Liste bleiben?", "Möchten Sie ACME-Nachrichten weiter erhalten?", "de"},
		{"DE_ch", "", Reminder(1), "Bisher haben wir noch keine Antwort", "Erinnerung: Möchten Sie ACME-Nachrichten weiter erhalten?", "de"},
		{"da", "", Reminder(1), "Vi har endnu ikke hørt fra dig", "Påmindelse: Vil du fortsat modtage ACME Nyheder?", "da"},
		{"en-GB", "", Reminder(3), "We have not heard from you yet", "Reminder: Do you still want ACME News?", "en"},
	}
	for _, tt := range tests {
		t.Run(tt.locale+"/"+tt.def+"/"+tt.kind.String(), func(t *testing.T) {
			c := testCampaign()
			c.DefaultLocale = tt.def
			r, err := tpl.render(testData(c, testRecipient(1, tt.locale)), tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.text, tt.wantText) || !strings.Contains(r.html, tt.wantText) {
				t.Errorf("text or HTML lacks %q:\n%s", tt.wantText, r.text)
			}
			if r.subject != tt.wantSubject {
				t.Errorf("subject %q, want %q", r.subject, tt.wantSubject)
			}
			// Both parts come from one locale.
			if !strings.Contains(r.html, `<html lang="`+tt.wantLang+`">`) {
				t.Errorf("HTML is not in %s:\n%s", tt.wantLang, r.html)
			}
			if !strings.Contains(r.html, "<title>"+tt.wantSubject+"</title>") {
				t.Errorf("HTML title is not the subject %q", tt.wantSubject)
			}
		})
	}
}

func TestReminderSubjectFromTheCampaign(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	c.ReminderSubjects = repermit.Text{"en": "Last call: ACME News", "da": "Sidste chance: ACME Nyheder"}
	for loc, want := range map[string]string{"en": "Last call: ACME News", "da": "Sidste chance: ACME Nyheder"} {
		r, err := tpl.render(testData(c, testRecipient(1, loc)), Reminder(2))
		if err != nil {
			t.Fatal(err)
		}
		if r.subject != want {
			t.Errorf("%s reminder subject %q, want %q", loc, r.subject, want)
		}
	}
}

func TestTextPartsAreWrappedAndCarryTheController(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	c.Topics = []string{"yoga", "events"}
	c.TopicText = map[string]repermit.TopicText{"yoga": {
		Label:       repermit.Text{"": "Yoga"},
		Description: repermit.Text{"": "Dates of new classes and retreats, and now and then a longer text about practice at home"},
	}}
	for _, loc := range locale.Default().Locales() {
		for _, kind := range []Kind{Initial, Reminder(1)} {
			r, err := tpl.render(testData(c, testRecipient(1, loc)), kind)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(r.text, "\n") {
				if n := utf8.RuneCountInString(line); n > 78 && strings.Contains(strings.TrimSpace(line), " ") {
					t.Errorf("%s %s line %d has %d characters: %q", loc, kind, i+1, n, line)
				}
			}
			for _, want := range []string{c.Controller.Name, c.Controller.Address, c.Controller.Contact, c.Controller.PrivacyURL, "/u/TOKEN"} {
				if !strings.Contains(strings.Join(strings.Fields(r.text), " "), want) || !strings.Contains(r.html, want) {
					t.Errorf("%s %s lacks %q", loc, kind, want)
				}
			}
		}
	}
}

func TestWrap(t *testing.T) {
	long := strings.Repeat("word ", 30)
	tests := []struct {
		name, in string
		want     []string
	}{
		{"short lines stay", "a b\n\nc", []string{"a b", "", "c"}},
		{"prose wraps", long, []string{strings.Repeat("word ", 15)[:74], strings.Repeat("word ", 15)[:74]}},
		{"items hang", "  - " + long, []string{"  - " + strings.Repeat("word ", 14)[:69], "    " + strings.Repeat("word ", 14)[:69], "    word word"}},
		{"a link stays whole", "  https://example.com/" + strings.Repeat("x", 90), []string{"  https://example.com/" + strings.Repeat("x", 90)}},
		{"signature separator keeps its space", "-- \nACME", []string{"-- ", "ACME"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Split(Wrap(tt.in, 76), "\n")
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("Wrap =\n%q\nwant\n%q", got, tt.want)
			}
		})
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
		{"testdata/nocontroller", false, "testdata/nocontroller/reminder.txt", "does not show the controller's contact"},
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
	if !strings.Contains(r.text, "  - yoga\n  - events") || !strings.Contains(r.html, "<strong>events</strong>") {
		t.Errorf("topics missing from the mail:\n%s", r.text)
	}
}

// TestMailsSpeakTheRecipientsLanguageOnly renders both mails for
// recipients in en, de, da, de-AT and without a locale (the campaign's
// default, Danish here) and looks for any phrase of another language.
func TestMailsSpeakTheRecipientsLanguageOnly(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	c.DefaultLocale = "da"
	c.TimeZone = "Europe/Copenhagen"
	c.Topics = []string{"yoga"}
	c.TopicText = map[string]repermit.TopicText{"yoga": {Label: repermit.Text{"en": "Yoga classes", "de": "Yogakurse", "da": "Yogahold"}}}
	tags := regexp.MustCompile(`<[^>]*>`)
	for _, tt := range []struct{ csv, lang string }{{"en", "en"}, {"de", "de"}, {"da", "da"}, {"de-AT", "de"}, {"", "da"}} {
		for _, kind := range []Kind{Initial, Reminder(1)} {
			d := testData(c, testRecipient(1, tt.csv))
			r, err := tpl.render(d, kind)
			if err != nil {
				t.Fatal(err)
			}
			w := locale.Default().Words(c, tt.lang)
			for part, body := range map[string]string{"subject": r.subject, "text": r.text, "html": html.UnescapeString(tags.ReplaceAllString(r.html, " "))} {
				if f := locale.Default().Foreign(body, tt.lang); len(f) > 0 {
					t.Errorf("%q %s %s has phrases of other languages: %q", tt.csv, kind, part, f)
				}
			}
			for _, want := range []string{w.Var("list"), c.TopicText["yoga"].Label.In(tt.lang), w.Time(c.Deadline)} {
				if !strings.Contains(strings.Join(strings.Fields(r.text), " "), want) || !strings.Contains(html.UnescapeString(r.html), want) {
					t.Errorf("%q %s lacks %q", tt.csv, kind, want)
				}
			}
			if !strings.Contains(r.html, `<html lang="`+tt.lang+`">`) || r.subject != w.Subject(kind > Initial) {
				t.Errorf("%q %s: subject %q, HTML lang not %s", tt.csv, kind, r.subject, tt.lang)
			}
		}
	}
}

func TestEveryLanguageWritesEveryMailInItself(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	c.ListName, c.Subjects = repermit.Text{"": "ACME"}, repermit.Text{"": "ACME"}
	tags := regexp.MustCompile(`<[^>]*>`)
	for _, l := range locale.Default().Locales() {
		for _, kind := range []Kind{Initial, Reminder(1)} {
			r, err := tpl.render(testData(c, testRecipient(1, l)), kind)
			if err != nil {
				t.Fatal(err)
			}
			if r.locale != l {
				t.Errorf("%s mail written in %s", l, r.locale)
			}
			for part, body := range map[string]string{"subject": r.subject, "text": r.text, "html": html.UnescapeString(tags.ReplaceAllString(r.html, " "))} {
				if f := locale.Default().Foreign(body, l); len(f) > 0 {
					t.Errorf("%s %s %s has phrases of other languages: %q", l, kind, part, f)
				}
			}
		}
	}
}
