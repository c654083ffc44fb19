package mailer

import (
	"fmt"
	"sort"
	"strings"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
)

// MailWordingHeader opens every mail wording (MailWording); the proof
// verifier checks it.
const MailWordingHeader = consentlog.MailWordingHeader

// MailWording returns the wording of the mail of the given kind that the
// recipient of d gets: its subject and text part as the campaign's
// templates render them in the recipient's locale, with every
// per-recipient value in a readable placeholder ({name}, {confirm link},
// {yes link}, {no link}, {unsubscribe link}, {address}, {column X}), so it
// holds no personal data and is the same for everyone of that locale and
// kind (with a name or without). It starts with a header naming the
// campaign, the mail and the locale, so that the text alone, which is
// what its hash covers, says what it is. The text part is wrapped with the
// placeholders in place, so line breaks near one may differ from a real
// mail's.
func (t *Templates) MailWording(d Data, kind Kind) (string, error) {
	if d.Campaign == nil || d.Recipient == nil {
		return "", fmt.Errorf("mail wording: campaign and recipient are required")
	}
	readable := map[string]string{
		placeholders[slotName]:        "{name}",
		placeholders[slotConfirm]:     "{confirm link}",
		placeholders[slotYes]:         "{yes link}",
		placeholders[slotNo]:          "{no link}",
		placeholders[slotUnsubscribe]: "{unsubscribe link}",
		"Zq7xRPADDRk3Wv":              "{address}",
	}
	r := &repermit.Recipient{Campaign: d.Recipient.Campaign, Locale: d.Recipient.Locale, Email: "Zq7xRPADDRk3Wv"}
	if d.Recipient.Name != "" {
		r.Name = placeholders[slotName]
	}
	if len(d.Recipient.Extra) > 0 {
		r.Extra = make(map[string]string, len(d.Recipient.Extra))
		cols := make([]string, 0, len(d.Recipient.Extra))
		for col := range d.Recipient.Extra {
			cols = append(cols, col)
		}
		sort.Strings(cols)
		for i, col := range cols {
			ph := fmt.Sprintf("Zq7xRPCOL%dk3Wv", i)
			r.Extra[col] = ph
			readable[ph] = "{column " + col + "}"
		}
	}
	p := d
	p.Recipient = r
	p.ConfirmURL, p.ConfirmYesURL, p.ConfirmNoURL = placeholders[slotConfirm], placeholders[slotYes], placeholders[slotNo]
	p.UnsubscribeURL = placeholders[slotUnsubscribe]
	out, err := t.render(p, kind)
	if err != nil {
		return "", fmt.Errorf("mail wording: %w", err)
	}
	pairs := make([]string, 0, 2*len(readable))
	for ph, text := range readable {
		pairs = append(pairs, ph, text)
	}
	repl := strings.NewReplacer(pairs...)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\ncampaign: %s\nmail: %s\nlocale: %s\nsubject: %s\n\n", MailWordingHeader,
		d.Campaign.ID, kind, out.locale, repl.Replace(out.subject))
	b.WriteString(repl.Replace(out.text))
	return b.String(), nil
}
