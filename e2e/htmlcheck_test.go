package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/mailer"
)

// mpHTMLCheck is GET /api/v1/message/{ID}/html-check: how well email
// clients support the HTML, per caniemail.com's data.
type mpHTMLCheck struct {
	Total struct {
		Supported   float64
		Partial     float64
		Unsupported float64
		Tests       int
	}
	Warnings []struct {
		Title    string
		Category string
		Score    struct {
			Supported, Partial, Unsupported float64
		}
	}
}

// TestDefaultMailsPassMailpitsHTMLCheck sends the initial mail and a
// reminder in every language (with topics, their descriptions and a
// data-protection officer, so every part of the template shows) to
// Mailpit and wants its HTML check to find at least 97 % of the HTML
// supported across the email clients it knows.
func TestDefaultMailsPassMailpitsHTMLCheck(t *testing.T) {
	needReal(t)
	t.Parallel()
	mp := startMailpit(t)
	cfg, err := mailer.ParseSMTPURL(mp.SMTPURL())
	if err != nil {
		t.Fatal(err)
	}
	pool := mailer.NewPool(cfg, 2)
	defer pool.Close()
	tpl, err := mailer.LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	c := &repermit.Campaign{
		ID: "htmlcheck", From: "ACME News <news@acme.example>", Subjects: repermit.Text{"": "ACME News"},
		ConfirmBaseURL: "https://consent.acme.example", StartAt: time.Now(), Deadline: time.Now().Add(30 * 24 * time.Hour),
		Topics:    []string{"yoga", "events"},
		TopicText: map[string]repermit.TopicText{"yoga": {Label: repermit.Text{"": "Yoga"}, Description: repermit.Text{"": "Dates of new classes"}}},
		Controller: repermit.Controller{Name: "ACME Handels GmbH", Address: "Hauptstraße 1, 10115 Berlin", Contact: "privacy@acme.example",
			PrivacyURL: "https://acme.example/privacy", DPO: "dpo@acme.example"},
	}
	sent := 0
	// which names each mail by its language and kind, for the per-mail
	// figures the closing note quotes.
	which := map[string]string{}
	for i, l := range locale.Default().Locales() {
		for _, kind := range []mailer.Kind{mailer.Initial, mailer.Reminder(1)} {
			r := &repermit.Recipient{Campaign: c.ID, Index: int64(i*10 + kind.Step()), Email: fmt.Sprintf("r%d@example.com", i), Name: "Ada", Locale: l}
			tok := fmt.Sprintf("TOKEN%d", r.Index)
			m, err := tpl.Build(mailer.NewData(c, r, c.ConfirmBaseURL+"/c/"+tok, c.ConfirmBaseURL+"/u/"+tok), kind)
			if err != nil {
				t.Fatal(err)
			}
			if err := pool.Send(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			which[mailer.MessageID(c.ID, r.Index, kind, c.From)] = l + " " + kind.String()
			sent++
		}
	}
	mp.WaitCount(sent, 30*time.Second)
	worst, worstWarns := 100.0, ""
	var scores []string
	for _, s := range mp.Messages() {
		var hc mpHTMLCheck
		mp.getJSON("/api/v1/message/"+s.ID+"/html-check", &hc)
		score := hc.Total.Supported
		var warns []string
		for _, w := range hc.Warnings {
			warns = append(warns, fmt.Sprintf("%s (%.0f %% supported)", w.Title, w.Score.Supported))
		}
		sort.Strings(warns)
		if hc.Total.Tests == 0 {
			t.Errorf("%s: html-check ran no tests", s.MessageID)
		}
		name, ok := which[strings.Trim(s.MessageID, "<>")]
		if !ok {
			t.Errorf("Mailpit holds %s, which this test did not send", s.MessageID)
		}
		scores = append(scores, fmt.Sprintf("%s %.1f %%", name, score))
		if score < worst {
			worst, worstWarns = score, strings.Join(warns, "; ")
		}
		if score < 97 {
			t.Errorf("%s: html-check %.1f %% supported, want ≥ 97 %%; warnings: %s", s.MessageID, score, strings.Join(warns, "; "))
		}
	}
	sort.Strings(scores)
	if len(scores) != sent {
		t.Errorf("html-check scored %d mails, want %d", len(scores), sent)
	}
	t.Logf("Mailpit html-check per mail: %s", strings.Join(scores, "; "))
	t.Logf("Mailpit html-check: the worst of %d default mails (%d languages, initial and reminder) is %.1f %% supported; its warnings: %s", sent, len(locale.Default().Locales()), worst, worstWarns)
}
