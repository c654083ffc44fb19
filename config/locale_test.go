package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// base is a campaign file without the keys the tests below vary; its
// last line is 6.
const base = `id: loc
from: "ACME <news@acme.example>"
recipients: recipients.csv
confirm_base_url: https://consent.acme.example
deadline: 30d
default_locale: en
`

const controller = `controller:
  name: ACME Handels GmbH
  address: "Hauptstraße 1, 10115 Berlin, Germany"
  contact: privacy@acme.example
  privacy_url: https://acme.example/privacy
`

func loadString(t *testing.T, yaml string) (*File, error) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"campaign.yaml": yaml, "recipients.csv": "email\na@example.com\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Load(filepath.Join(dir, "campaign.yaml"), now)
}

func TestControllerAndLocaleProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []want
	}{
		{"no controller", base + "subject: s\n", []want{{1, `missing required key "controller"`}}},
		{"controller incomplete", base + "subject: s\ncontroller:\n  name: ACME\n  contact: not an address\n", []want{
			{9, "controller: missing address"},
			{9, "controller: missing privacy_url"},
			{10, `controller.contact: "not an address" is neither an e-mail address nor an https URL`},
		}},
		{"controller bad privacy URL", base + "subject: s\n" + strings.Replace(controller, "https://acme.example/privacy", "acme.example/privacy", 1), []want{
			{12, `controller.privacy_url: "acme.example/privacy" is not an absolute URL`},
		}},
		{"controller unknown key", base + "subject: s\n" + controller + "  dpo: dpo@acme.example\n  phone: 123\n", []want{
			{14, `unknown key "controller.phone"`},
		}},
		{"subject lacks the default locale", base + "subject: {de: \"Noch dabei?\", da: \"Stadig med?\"}\n" + controller, []want{
			{7, "subject: no wording for the default locale en"},
		}},
		{"list name with a line break", base + "subject: s\nlist_name: \"ACME\\nNews\"\n" + controller, []want{
			{8, "list_name: must be one line"},
		}},
		{"not a locale", base + "subject: {en: s, 'e n': t}\n" + controller, []want{
			{7, `subject: "e n" is not a locale`},
		}},
		{"unknown default locale", strings.Replace(base, "default_locale: en", "default_locale: xx", 1) + "subject: s\n" + controller, []want{
			{6, `default_locale: "xx" is not a language repermit has`},
		}},
		{"bad time zone", base + "subject: s\ntimezone: Europe/Kopenhagen\n" + controller, []want{
			{8, `timezone: "Europe/Kopenhagen" is not an IANA time zone`},
		}},
		{"topic without id", base + "subject: s\ntopics:\n  - label: Yoga\n" + controller, []want{
			{9, "topics: a topic written as a mapping needs an id"},
		}},
		{"topic label lacks the default locale", base + "subject: s\ntopics:\n  - id: yoga\n    label: {de: Yoga}\n" + controller, []want{
			{10, "topics.yoga.label: no wording for the default locale en"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadString(t, tt.yaml)
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("Load: %v, want Problems", err)
			}
			if len(ps) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(ps), len(tt.want), err)
			}
			for i := 0; i < len(ps) && i < len(tt.want); i++ {
				if ps[i].Line != tt.want[i].line || !strings.Contains(ps[i].Msg, tt.want[i].msg) {
					t.Errorf("problem %d = %q, want line %d with %q", i, ps[i], tt.want[i].line, tt.want[i].msg)
				}
			}
		})
	}
}

func TestLocalizedCampaign(t *testing.T) {
	f, err := loadString(t, base+`subject: {en: "Still in?", de: "Noch dabei?", da: "Stadig med?", pt: "Ainda?"}
reminder_subject: {en: "Last call", de: "Letzte Chance", da: "Sidste chance"}
list_name: ACME News
timezone: Europe/Copenhagen
topics:
  - yoga
  - id: events
    label: {en: Events, DE_at: Veranstaltungen, da: Arrangementer}
    description: {en: "Dates of our fairs"}
`+controller+"  dpo: https://acme.example/dpo\n")
	if err != nil {
		t.Fatal(err)
	}
	c := f.Campaign
	if c.Subject != "Still in?" || c.Subjects.In("da") != "Stadig med?" || c.ReminderSubjects.In("de") != "Letzte Chance" {
		t.Errorf("subjects %q %v %v", c.Subject, c.Subjects, c.ReminderSubjects)
	}
	if c.ListName.In("da") != "ACME News" || c.TimeZone != "Europe/Copenhagen" || c.Location().String() != "Europe/Copenhagen" {
		t.Errorf("list name %v, zone %q", c.ListName, c.TimeZone)
	}
	if !reflect.DeepEqual(c.Topics, []string{"yoga", "events"}) || c.TopicText["events"].Label.In("de-at") != "Veranstaltungen" {
		t.Errorf("topics %v %v", c.Topics, c.TopicText)
	}
	if c.Controller.DPO != "https://acme.example/dpo" || c.Controller.ContactURL() != "mailto:privacy@acme.example" {
		t.Errorf("controller %+v", c.Controller)
	}
	// "pt" has no language file: a warning at its line, nothing refused.
	if len(f.Warnings) != 1 || f.Warnings[0].Line != 7 || !strings.Contains(f.Warnings[0].Msg, `no language file for locale "pt"`) {
		t.Errorf("warnings %v", f.Warnings)
	}

	// Recipients reading de-at (resolved to de) and sv: the subject and
	// the reminder have German, the label only de-AT; nothing has Swedish.
	errs, warns := f.CheckLocales(map[string]int64{"de": 3, "da": 2, "sv": 1})
	got := errs.Error()
	for _, w := range []string{":7: subject: no wording for sv, which 1 recipients read", ":8: reminder_subject: no wording for sv", ":14: topics.events.label: no wording for de, which 3", ":14: topics.events.label: no wording for sv"} {
		if !strings.Contains(got, w) {
			t.Errorf("CheckLocales errors lack %q:\n%s", w, got)
		}
	}
	if len(errs) != 4 {
		t.Errorf("%d errors, want 4:\n%s", len(errs), got)
	}
	if len(warns) != 3 || !strings.Contains(warns.Error(), ":15: topics.events.description: no wording for da") {
		t.Errorf("warnings %v", warns)
	}
}

// TestOneSubjectForSeveralLanguagesIsAWarning: the German
// recipient got "Erinnerung: Do you still want ACME News?". A subject
// given as one string is still accepted (it may be a name), but validate
// says at its line that readers of several languages get it as it is.
func TestOneSubjectForSeveralLanguagesIsAWarning(t *testing.T) {
	f, err := loadString(t, base+"subject: Do you still want ACME News?\nreminder_subject: {en: Last call, de: Letzte Chance}\nlist_name: ACME News\n"+controller)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		used map[string]int64
		want []string
	}{
		{map[string]int64{"en": 3}, nil},
		{map[string]int64{"en": 3, "de": 2}, []string{":7: subject: one wording for readers of de, en"}},
	}
	for _, tt := range tests {
		errs, warns := f.CheckLocales(tt.used)
		if len(errs) != 0 {
			t.Errorf("%v: errors %v", tt.used, errs)
		}
		if len(warns) != len(tt.want) {
			t.Errorf("%v: warnings %v, want %q", tt.used, warns, tt.want)
			continue
		}
		for i, w := range tt.want {
			if !strings.Contains(warns[i].String(), w) {
				t.Errorf("%v: warning %q, want %q", tt.used, warns[i], w)
			}
		}
	}
}
