package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// localized is a campaign with wordings in en, de and da; line 3 is the
// subject, line 4 the list name.
const localized = `id: loc
from: "ACME <news@acme.example>"
subject: {en: "Do you still want ACME News?", de: "Möchten Sie die ACME-Nachrichten weiter?", da: "Vil du fortsat modtage ACME Nyheder?"}
list_name: {en: ACME News, de: ACME-Nachrichten, da: ACME Nyheder}
recipients: recipients.csv
confirm_base_url: https://consent.acme.example
deadline: 30d
reminders: [7d]
timezone: Europe/Copenhagen
templates: tpl
controller:
  name: ACME Handels GmbH
  address: "Hauptstraße 1, 10115 Berlin, Germany"
  contact: privacy@acme.example
  privacy_url: https://acme.example/privacy
`

const localizedCSV = "email,locale\na@example.com,en\nb@example.com,de\nc@example.com,da\nd@example.com,de-AT\ne@example.com,\nf@example.com,pt-BR\n"

func localizedDir(t *testing.T, yaml string, tpl map[string]string) string {
	t.Helper()
	dir := writeFiles(t, map[string]string{"campaign.yaml": yaml, "recipients.csv": localizedCSV})
	for name, body := range tpl {
		p := filepath.Join(dir, "tpl", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "tpl"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestValidateCountsAndRendersEachLanguage(t *testing.T) {
	dir := localizedDir(t, localized, nil)
	code, out, errOut := newCLI(t, nil).run("validate", filepath.Join(dir, "campaign.yaml"))
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	if !strings.Contains(out, "languages: da (Dansk) 1, de (Deutsch) 2, en (English) 3") {
		t.Errorf("stdout lacks the per-language counts:\n%s", out)
	}
	if !strings.Contains(errOut, `recipients.csv:7: no language file for locale "pt-BR"`) {
		t.Errorf("stderr lacks the unknown locale's line:\n%s", errOut)
	}
}

func TestValidateFailsWithFileAndLine(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		tpl  map[string]string
		want string
	}{
		{"missing translation", strings.Replace(localized, ", da: ACME Nyheder}", "}", 1), nil,
			"campaign.yaml:4: list_name: no wording for da, which 1 recipients read"},
		{"broken page override", localized, map[string]string{"pages/landing.de.html": "{{define \"title\"}}x{{end}}\n{{define \"main\"}}\n{{.Nope}}\n{{end}}\n"},
			filepath.Join("tpl", "pages", "landing.de.html") + ":3: "},
		{"broken mail override", localized, map[string]string{"initial.da.txt": "Hej\n\n{{.ConfirmYesURL}}\n{{if}}\n"},
			filepath.Join("tpl", "initial.da.txt") + ":4: "},
		{"mail override asks for a message no language has", localized, map[string]string{"reminder.txt": "{{.ConfirmURL}}\n\n{{.T \"no.such.message\"}}\n"},
			filepath.Join("tpl", "reminder.txt") + ":3: "},
		// de-AT recipients get a de-AT override, not the German defaults.
		{"broken mail override for de-AT", localized, map[string]string{"initial.de-AT.txt": "Servus\n\n{{.ConfirmYesURL}}\n{{.Recipient.Nope}}\n"},
			filepath.Join("tpl", "initial.de-AT.txt") + ":4: "},
		{"broken page override for de-AT", localized, map[string]string{"pages/landing.de-at.html": "{{define \"title\"}}x{{end}}\n{{define \"main\"}}\n{{.Nope}}\n{{end}}\n"},
			filepath.Join("tpl", "pages", "landing.de-at.html") + ":3: "},
		// Every mail and page says who is asking (GDPR Art. 13); an
		// override that drops the default footer does not launch.
		{"mail override without the controller", localized, map[string]string{"initial.da.txt": "Hej\n\n{{.ConfirmYesURL}}\n"},
			filepath.Join("tpl", "initial.da.txt") + ": does not show the controller's name"},
		{"page layout without the controller", localized, map[string]string{"pages/layout.html": `{{define "layout"}}<!DOCTYPE html>
<html lang="{{.Lang}}"><head><title>{{template "title" .}}</title></head>
<body><main>{{template "main" .}}</main></body></html>{{end}}
`}, filepath.Join("tpl", "pages") + ": page landing.html for locale da does not show the controller's address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := localizedDir(t, tt.yaml, tt.tpl)
			code, _, errOut := newCLI(t, nil).run("validate", filepath.Join(dir, "campaign.yaml"))
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, want 2 with %q; stderr:\n%s", code, tt.want, errOut)
			}
		})
	}
}

func TestPreviewWritesMailsAndPages(t *testing.T) {
	dir := localizedDir(t, localized, nil)
	out := filepath.Join(t.TempDir(), "preview")
	code, stdout, errOut := newCLI(t, nil).run("preview", filepath.Join(dir, "campaign.yaml"), "--locale", "da", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	for _, name := range []string{"mail-initial.eml", "mail-reminder1.eml", "page-landing.html", "page-result-confirmed.html", "page-unsubscribe.html", "page-error-410.html"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Errorf("%s: %v (stdout %s)", name, err, stdout)
			continue
		}
		if strings.HasSuffix(name, ".html") && !strings.Contains(string(b), `<html lang="da">`) {
			t.Errorf("%s is not Danish", name)
		}
		if name == "mail-initial.eml" && !strings.Contains(string(b), "Subject: Vil du fortsat modtage ACME Nyheder?") {
			t.Errorf("%s has not the Danish subject:\n%.600s", name, b)
		}
	}
	// Bad input writes nothing.
	empty := filepath.Join(t.TempDir(), "none")
	if code, _, _ := newCLI(t, nil).run("preview", filepath.Join(dir, "campaign.yaml"), "--locale", "d a", "--out", empty); code != 2 {
		t.Errorf("bad locale: exit %d, want 2", code)
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("bad locale wrote %s", empty)
	}
}
