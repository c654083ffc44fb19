package web

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/token"
)

// multilingual is a campaign in English, German and Danish, in
// Copenhagen's time zone, with labelled topics.
func multilingual() repermit.Campaign {
	return repermit.Campaign{
		ID: "multi", From: "ACME <news@acme.example>", Subject: "Do you still want ACME News?",
		StartAt: t0, Deadline: t0.Add(24 * time.Hour), DefaultLocale: "en", TimeZone: "Europe/Copenhagen",
		ListName: repermit.Text{"en": "ACME News", "de": "ACME-Nachrichten", "da": "ACME Nyheder"},
		Subjects: repermit.Text{"en": "Do you still want ACME News?", "de": "Möchten Sie die ACME-Nachrichten weiter?", "da": "Vil du fortsat modtage ACME Nyheder?"},
		Topics:   []string{"yoga", "blankets"},
		TopicText: map[string]repermit.TopicText{
			"yoga": {
				Label:       repermit.Text{"en": "Yoga classes", "de": "Yogakurse", "da": "Yogahold"},
				Description: repermit.Text{"en": "Dates of new classes and retreats", "de": "Termine neuer Kurse und Retreats", "da": "Datoer for nye hold og retreats"},
			},
			"blankets": {Label: repermit.Text{"en": "Rheumatism blankets", "de": "Rheumadecken", "da": "Gigttæpper"}},
		},
		Controller: testController,
	}
}

// multiLocales are the recipients' CSV locales: 4 has none, and its
// browser prefers Danish.
var multiLocales = []string{"en", "de", "da", "de-AT", ""}

const danishBrowser = "da;q=0.9, en;q=0.8"

// wantOnly fails if page is not entirely in lang: its <html lang>, the
// campaign's wordings in lang and no phrase of another language, neither
// of the strings files nor of the campaign.
func wantOnly(t *testing.T, what, page, lang string, c repermit.Campaign) {
	t.Helper()
	// What a reader sees: the text between the tags, and the title.
	text := html.UnescapeString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(page, " "))
	if !strings.Contains(page, `<html lang="`+lang+`">`) {
		t.Errorf("%s: not <html lang=%q>", what, lang)
	}
	if f := locale.Default().Foreign(text, lang); len(f) > 0 {
		t.Errorf("%s in %s has phrases of other languages: %q", what, lang, f)
	}
	own := c.ListName[lang] + "|" + c.TopicText["yoga"].Label[lang] + "|" + c.TopicText["blankets"].Label[lang]
	for _, l := range []string{"en", "de", "da"} {
		if l == lang {
			continue
		}
		for _, w := range []string{c.ListName[l], c.TopicText["yoga"].Label[l], c.TopicText["blankets"].Label[l]} {
			if w != "" && strings.Contains(text, w) && !strings.Contains(own, w) {
				t.Errorf("%s in %s contains the %s wording %q", what, lang, l, w)
			}
		}
	}
}

func TestPagesSpeakTheRecipientsLanguageOnly(t *testing.T) {
	c := multilingual()
	h := newCampaignHarness(t, c, multiLocales)
	want := []string{"en", "de", "da", "de", "da"}
	for i := range uint32(len(multiLocales)) {
		lang := want[i]
		w := locale.Default().Words(&h.c, lang)
		get := func(path string) string {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Accept-Language", danishBrowser)
			rec := h.do(req)
			wantStatus(t, path, rec, http.StatusOK)
			return rec.Body.String()
		}
		post := func(path string, form url.Values) string {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept-Language", danishBrowser)
			rec := h.do(req)
			wantStatus(t, path, rec, http.StatusOK)
			return rec.Body.String()
		}
		who := "recipient " + multiLocales[i]
		landing := get(h.confirmPath(i))
		wantOnly(t, who+" landing", landing, lang, h.c)
		// The landing page names the list, the controller, what each
		// topic brings and the deadline as the mail writes it.
		for _, s := range []string{w.Var("list"), testController.Name, testController.Address, testController.PrivacyURL,
			c.TopicText["yoga"].Description.In(lang), w.Time(h.c.Deadline), "<title>" + html.EscapeString(mustT(t, w, "landing.title")) + "</title>"} {
			if !strings.Contains(html.UnescapeString(landing), html.UnescapeString(s)) {
				t.Errorf("%s landing lacks %q", who, s)
			}
		}
		wantOnly(t, who+" unsubscribe page", get(h.unsubPath(i)), lang, h.c)

		result := post(h.confirmPath(i), confirmForm("confirm", "yoga"))
		wantOnly(t, who+" result", result, lang, h.c)
		// The result states what was recorded (answer, topics, time) and
		// how to change it or withdraw.
		for _, s := range []string{mustT(t, w, "answer.yes"), c.TopicText["yoga"].Label.In(lang), w.Time(*h.now.Load()), mustT(t, w, "result.change_confirmed")} {
			if !strings.Contains(html.UnescapeString(result), s) {
				t.Errorf("%s result lacks %q", who, s)
			}
		}
		wantOnly(t, who+" landing after yes", get(h.confirmPath(i)), lang, h.c)
	}

	// A link nobody knows, from a Danish browser.
	req := httptest.NewRequest(http.MethodGet, "/c/forged", nil)
	req.Header.Set("Accept-Language", danishBrowser)
	rec := h.do(req)
	wantStatus(t, "forged link", rec, http.StatusNotFound)
	wantOnly(t, "404", rec.Body.String(), "da", repermit.Campaign{})

	// After the deadline, a link whose recipient is gone is gone, in
	// Danish. (The recipients above confirmed: their links still work.)
	h.setNow(h.c.Deadline.Add(time.Minute))
	req = httptest.NewRequest(http.MethodGet, "/u/"+h.signer.Sign(token.Claims{Purpose: token.Unsubscribe, Campaign: h.c.ID, CampaignSeq: h.c.Seq, Recipient: 99, Deadline: h.c.Deadline}), nil)
	req.Header.Set("Accept-Language", danishBrowser)
	rec = h.do(req)
	wantStatus(t, "unsubscribe after the deadline", rec, http.StatusGone)
	wantOnly(t, "410", rec.Body.String(), "da", h.c)
	// The campaign is known: its 410 page names the controller too.
	for _, s := range []string{testController.Name, testController.PrivacyURL, "Dataansvarlig"} {
		if !strings.Contains(html.UnescapeString(rec.Body.String()), s) {
			t.Errorf("410 page lacks %q", s)
		}
	}
}

func mustT(t *testing.T, w *locale.Words, key string) string {
	t.Helper()
	s, err := w.T(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBrowserLanguageOnlyAmongTheCampaignsLanguages: a campaign without
// Danish wordings shows a Danish browser the default language, not a
// Danish page with an English list name.
func TestBrowserLanguageOnlyAmongTheCampaignsLanguages(t *testing.T) {
	c := multilingual()
	delete(c.ListName, "da")
	h := newCampaignHarness(t, c, []string{""})
	req := httptest.NewRequest(http.MethodGet, h.confirmPath(0), nil)
	req.Header.Set("Accept-Language", danishBrowser)
	wantOnly(t, "landing", h.do(req).Body.String(), "en", h.c)
}

func TestPreviewFailsOnABrokenOverrideWithItsFileAndLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pages"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pages", "result.da.html")
	broken := "{{define \"title\"}}Tak{{end}}\n{{define \"main\"}}\n<p>{{.Answer.Nope}}</p>\n{{end}}\n"
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	c := multilingual()
	c.TemplatesDir = dir
	if err := CheckPages(&c, []string{"en", "de"}); err != nil {
		t.Errorf("English and German use the defaults, yet: %v", err)
	}
	err := CheckPages(&c, []string{"da"})
	if err == nil || !strings.Contains(err.Error(), path+":3:") || repermit.ErrorCode(err) != repermit.EINVALID {
		t.Errorf("CheckPages: %v, want EINVALID naming %s:3", err, path)
	}
}

// TestEveryLanguageRendersEveryPageInItself renders each page in each
// language of the strings files and looks for phrases of the others.
func TestEveryLanguageRendersEveryPageInItself(t *testing.T) {
	c := multilingual()
	c.ListName, c.Subjects, c.TopicText = repermit.Text{"": "ACME"}, repermit.Text{"": "ACME"}, nil
	for _, l := range locale.Default().Locales() {
		pages, err := Preview(&c, l)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		for _, p := range pages {
			wantOnly(t, p.Name, string(p.HTML), l, c)
		}
	}
}

// TestErrorPagesOfACampaignNameItsController: an answer the server cannot
// read gets its 400 page in the recipient's language, with the footer
// every page of the campaign has.
func TestErrorPagesOfACampaignNameItsController(t *testing.T) {
	h := newCampaignHarness(t, multilingual(), multiLocales)
	rec := h.postForm(h.confirmPath(2), url.Values{"choice": {"maybe"}})
	wantStatus(t, "POST choice=maybe", rec, http.StatusBadRequest)
	page := rec.Body.String()
	wantOnly(t, "400", page, "da", h.c)
	for _, s := range []string{testController.Name, testController.PrivacyURL, "Dataansvarlig"} {
		if !strings.Contains(html.UnescapeString(page), s) {
			t.Errorf("400 page lacks %q", s)
		}
	}
}
