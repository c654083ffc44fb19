package mailer

import (
	"encoding/json"
	"net/mail"
	"strings"
	"testing"
	"time"
)

func TestMailHasTextAndHTMLWithTheConfirmLinks(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	d := testData(c, testRecipient(3, "en"))
	got := sendAndReceive(t, tpl, d, Initial)

	for _, ct := range []string{"text/plain", "text/html"} {
		body, ok := got.parts[ct]
		if !ok {
			t.Fatalf("no %s part; parts: %v", ct, keys(got.parts))
		}
		for _, want := range []string{d.ConfirmYesURL, d.ConfirmNoURL, "31 December 2026 at 09:00 (UTC)", "ACME News", d.UnsubscribeURL} {
			if !strings.Contains(body, want) {
				t.Errorf("%s part lacks %q:\n%s", ct, want, body)
			}
		}
	}
	if !strings.Contains(got.parts["text/html"], "Yes, keep me subscribed") ||
		!strings.Contains(got.parts["text/html"], "No, thanks") {
		t.Errorf("HTML lacks the two answers")
	}
	if strings.Contains(strings.ToLower(got.parts["text/html"]), "<img") {
		t.Errorf("HTML contains an image; the default mail carries no tracking pixel")
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestMailHeaders(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	d := testData(c, testRecipient(42, "en"))
	got := sendAndReceive(t, tpl, d, Reminder(2))
	h := got.header

	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil || from.Address != "news@acme.example" || from.Name != "ACME News" {
		t.Errorf("From = %q (%v)", h.Get("From"), err)
	}
	to, err := mail.ParseAddress(h.Get("To"))
	if err != nil || to.Address != "ada@example.org" || to.Name != "Ada Lovelace" {
		t.Errorf("To = %q (%v)", h.Get("To"), err)
	}
	if got, want := decodeHeader(t, h, "Subject"), "Reminder: Do you still want ACME News?"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	if date, err := h.Date(); err != nil || time.Since(date) > time.Minute {
		t.Errorf("Date = %q (%v)", h.Get("Date"), err)
	}
	if got, want := h.Get("Message-ID"), "<repermit.news-2026.42.reminder2@acme.example>"; got != want {
		t.Errorf("Message-ID = %q, want %q", got, want)
	}
	if got, want := h.Get("List-Unsubscribe"), "<"+d.UnsubscribeURL+">, <mailto:unsubscribe@acme.example>"; got != want {
		t.Errorf("List-Unsubscribe = %q, want %q", got, want)
	}
	if got := h.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post = %q", got)
	}
	// The Message-ID again, for the ESPs' webhooks: Postmark's metadata
	// and SendGrid's unique_args.
	if got, want := h.Get(PostmarkMetadataHeader), "repermit.news-2026.42.reminder2@acme.example"; got != want {
		t.Errorf("%s = %q, want %q", PostmarkMetadataHeader, got, want)
	}
	var smtpAPI struct {
		UniqueArgs map[string]string `json:"unique_args"`
	}
	if err := json.Unmarshal([]byte(h.Get(SendGridSMTPAPIHeader)), &smtpAPI); err != nil ||
		len(smtpAPI.UniqueArgs) != 1 || smtpAPI.UniqueArgs[SendGridIDField] != "repermit.news-2026.42.reminder2@acme.example" {
		t.Errorf("%s = %q (%v), want unique_args naming only the Message-ID", SendGridSMTPAPIHeader, h.Get(SendGridSMTPAPIHeader), err)
	}
	if got := h.Get("Precedence"); got != "bulk" {
		t.Errorf("Precedence = %q, want bulk", got)
	}
	if ua := h.Get("User-Agent") + h.Get("X-Mailer"); ua != "" {
		t.Errorf("mail names its software: %q", ua)
	}
}

func TestMessageIDIsDeterministicPerRecipientAndKind(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	id := func(index int64, kind Kind) string {
		t.Helper()
		m, err := tpl.Build(testData(c, testRecipient(index, "en")), kind)
		if err != nil {
			t.Fatal(err)
		}
		return m.GetMessageID()
	}
	if a, b := id(7, Initial), id(7, Initial); a != b {
		t.Errorf("two builds of one mail: %s and %s", a, b)
	}
	seen := map[string]string{}
	for _, tt := range []struct {
		index int64
		kind  Kind
	}{{7, Initial}, {7, Reminder(1)}, {7, Reminder(2)}, {8, Initial}} {
		got := id(tt.index, tt.kind)
		if prev, dup := seen[got]; dup {
			t.Errorf("recipient %d %s has the Message-ID of %s: %s", tt.index, tt.kind, prev, got)
		}
		seen[got] = tt.kind.String()
	}
}

func TestBuildRefusesIncompleteData(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	good := testData(c, testRecipient(1, "en"))
	tests := []struct {
		name   string
		change func(d *Data)
	}{
		{"no campaign", func(d *Data) { d.Campaign = nil }},
		{"no recipient", func(d *Data) { d.Recipient = nil }},
		{"no confirm URL", func(d *Data) { d.ConfirmURL = "" }},
		{"unsubscribe not http", func(d *Data) { d.UnsubscribeURL = "javascript:alert(1)" }},
		{"bad address", func(d *Data) { r := *d.Recipient; r.Email = "not an address"; d.Recipient = &r }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := good
			tt.change(&d)
			if _, err := tpl.Build(d, Initial); err == nil {
				t.Error("Build succeeded")
			}
		})
	}
}

func TestRecipientNameCannotInjectHeaders(t *testing.T) {
	tpl := loadTemplates(t, "")
	r := testRecipient(1, "en")
	r.Name = "Eve\r\nBcc: victim@example.org"
	got := sendAndReceive(t, tpl, testData(testCampaign(), r), Initial)
	if bcc := got.header.Get("Bcc"); bcc != "" {
		t.Fatalf("a name in the CSV added Bcc: %q", bcc)
	}
	to, err := mail.ParseAddress(got.header.Get("To"))
	if err != nil || to.Address != "ada@example.org" {
		t.Errorf("To = %q (%v)", got.header.Get("To"), err)
	}
}

func TestParseMessageIDReadsWhatMessageIDWrote(t *testing.T) {
	for _, tt := range []struct {
		campaign string
		index    int64
		kind     Kind
	}{{"news-2026", 0, Initial}, {"a", 123456789, Reminder(2)}} {
		id := MessageID(tt.campaign, tt.index, tt.kind, "ACME <news@acme.example>")
		for _, form := range []string{id, "<" + id + ">", " <" + id + "> "} {
			c, i, ok := ParseMessageID(form)
			if !ok || c != tt.campaign || i != tt.index {
				t.Errorf("ParseMessageID(%q) = %q, %d, %v; want %q, %d", form, c, i, ok, tt.campaign, tt.index)
			}
		}
	}
	for _, bad := range []string{"", "x@y", "repermit.news.1@", "repermit.news.-1.initial@a", "repermit..1.initial@a", "other.news.1.initial@a", "repermit.news.x.initial@a", "repermit.news.1.initial"} {
		if c, i, ok := ParseMessageID(bad); ok {
			t.Errorf("ParseMessageID(%q) = %q, %d, true; want false", bad, c, i)
		}
	}
}
