package e2e

import (
	"html"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit/demo"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/redistest"
)

// TestCampaignSpeaksEachRecipientsLanguage launches a campaign in
// English, German and Danish to recipients in en, de, da, de-AT and
// without a locale, has the worker send through Mailpit, and opens each
// mail's link in a browser that prefers Danish: every mail (subject
// included) and every page (title included) must be in the recipient's
// language and contain no phrase of another.
func TestCampaignSpeaksEachRecipientsLanguage(t *testing.T) {
	needReal(t)
	t.Parallel()
	r := redistest.New(t)
	mp := startMailpit(t)
	w := newWorld(t, r.URL, r.Prefix, mp.SMTPURL())
	w.startWeb()
	w.start("worker", "worker")

	dir := filepath.Join(w.dir, "multi")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	campaign := `id: e2e-multi
from: "ACME <news@acme.example>"
default_locale: en
timezone: Europe/Copenhagen
list_name: {en: "ACME News", de: "ACME-Nachrichten", da: "ACME Nyheder"}
subject: {en: "Do you still want ACME News?", de: "Möchten Sie die ACME-Nachrichten weiter erhalten?", da: "Vil du fortsat modtage ACME Nyheder?"}
recipients: recipients.csv
confirm_base_url: ` + w.baseURL() + `
deadline: 1h
rate: {per_second: 100}
topics:
  - id: yoga
    label: {en: "Yoga classes", de: "Yogakurse", da: "Yogahold"}
    description: {en: "Dates of new classes", de: "Termine neuer Kurse", da: "Datoer for nye hold"}
controller: {name: ACME Handels GmbH, address: "Hauptstraße 1, 10115 Berlin", contact: privacy@acme.example, privacy_url: https://acme.example/privacy}
`
	want := map[string]string{ // address -> language of mail and page
		"en@e2e.example": "en", "de@e2e.example": "de", "da@e2e.example": "da",
		"at@e2e.example": "de", "none@e2e.example": "da",
	}
	mailLang := map[string]string{"none@e2e.example": "en"} // the default locale: no browser is asked about mail
	csv := "email,locale\nen@e2e.example,en\nde@e2e.example,de\nda@e2e.example,da\nat@e2e.example,de-AT\nnone@e2e.example,\n"
	for name, body := range map[string]string{"campaign.yaml": campaign, "recipients.csv": csv} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.launch(filepath.Join(dir, "campaign.yaml"))
	mp.WaitCount(len(want), 30*time.Second)

	tags := regexp.MustCompile(`<[^>]*>`)
	visible := func(s string) string { return html.UnescapeString(tags.ReplaceAllString(s, " ")) }
	client := &http.Client{Timeout: 10 * time.Second}
	msgs := mp.Messages()
	if len(msgs) != len(want) {
		t.Fatalf("%d mails in Mailpit, want %d", len(msgs), len(want))
	}
	for _, s := range msgs {
		l, err := demo.ParseLinks(mp.Raw(s.ID))
		if err != nil {
			t.Fatal(err)
		}
		m := mp.Message(s.ID)
		lang, ok := want[l.To]
		if !ok {
			t.Fatalf("mail to %s, who is not a recipient", l.To)
		}
		if ml, ok := mailLang[l.To]; ok {
			lang = ml
		}
		for part, body := range map[string]string{"subject": m.Subject, "text": m.Text, "html": visible(m.HTML)} {
			if f := locale.Default().Foreign(body, lang); len(f) > 0 {
				t.Errorf("mail to %s (%s): %s has phrases of other languages: %q", l.To, lang, part, f)
			}
		}
		if !strings.Contains(m.HTML, `<html lang="`+lang+`">`) {
			t.Errorf("mail to %s: HTML is not <html lang=%q>", l.To, lang)
		}

		req, err := http.NewRequest(http.MethodGet, l.Yes, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Language", "da;q=0.9, en;q=0.8")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page, lang := string(b), want[l.To]
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<html lang="`+lang+`">`) {
			t.Errorf("page of %s: status %d, want 200 in %s:\n%.300s", l.To, resp.StatusCode, lang, page)
		}
		if f := locale.Default().Foreign(visible(page), lang); len(f) > 0 {
			t.Errorf("page of %s (%s) has phrases of other languages: %q", l.To, lang, f)
		}
	}
}
