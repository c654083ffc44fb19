package mailer

import (
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/repermit/repermit/locale"
)

// TestEveryMailShowsAnUnsubscribeLinkBesideNoThanks reads every default
// mail (each language, initial and reminder) as a mail client would and
// wants, in the HTML part, the unsubscribe link in the same paragraph as
// "No, thanks", labelled in the mail's language and not hidden; in the
// text part, the unsubscribe link right after the "No, thanks" link.
// RFC 8058's header is shown only by some clients; the link in the body
// is what everyone else sees.
func TestEveryMailShowsAnUnsubscribeLinkBesideNoThanks(t *testing.T) {
	tpl := loadTemplates(t, "")
	c := testCampaign()
	for _, l := range locale.Default().Locales() {
		w := locale.Default().Words(c, l)
		no, err := w.T("answer.no")
		if err != nil {
			t.Fatal(err)
		}
		unsub, err := w.T("answer.unsubscribe")
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []Kind{Initial, Reminder(1)} {
			t.Run(l+"/"+kind.String(), func(t *testing.T) {
				d := testData(c, testRecipient(int64(kind.Step()), l))
				got := sendAndReceive(t, tpl, d, kind)

				doc, err := html.Parse(strings.NewReader(got.parts["text/html"]))
				if err != nil {
					t.Fatal(err)
				}
				noLink := findLink(doc, d.ConfirmNoURL)
				if noLink == nil || text(noLink) != no {
					t.Fatalf("HTML has no link %q to %s", no, d.ConfirmNoURL)
				}
				unsubLink := findLink(noLink.Parent, d.UnsubscribeURL)
				if unsubLink == nil {
					t.Fatalf("the paragraph of %q has no link to %s:\n%s", no, d.UnsubscribeURL, render(noLink.Parent))
				}
				if text(unsubLink) != unsub {
					t.Errorf("unsubscribe link reads %q, want %q", text(unsubLink), unsub)
				}
				for n := unsubLink; n != nil; n = n.Parent {
					if s := strings.ToLower(strings.ReplaceAll(attr(n, "style"), " ", "")); strings.Contains(s, "display:none") ||
						strings.Contains(s, "visibility:hidden") || strings.Contains(s, "font-size:0") {
						t.Errorf("unsubscribe link hidden by <%s style=%q>", n.Data, attr(n, "style"))
					}
				}

				// Text part: label line and link of "No, thanks", then of
				// "Unsubscribe".
				var lines []string
				for _, line := range strings.Split(got.parts["text/plain"], "\n") {
					if line = strings.TrimSpace(line); line != "" {
						lines = append(lines, line)
					}
				}
				i := indexOf(lines, d.ConfirmNoURL)
				if i < 0 || i+2 >= len(lines) || !strings.HasPrefix(lines[i+1], unsub) || lines[i+2] != d.UnsubscribeURL {
					t.Errorf("text part lacks %q and %s right after the link of %q:\n%s", unsub, d.UnsubscribeURL, no, got.parts["text/plain"])
				}
			})
		}
	}
}

// findLink returns the first <a> under n whose href is url.
func findLink(n *html.Node, url string) *html.Node {
	if n.Type == html.ElementNode && n.Data == "a" && attr(n, "href") == url {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := findLink(c, url); f != nil {
			return f
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is the visible text under n, spaces collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

func render(n *html.Node) string {
	var b strings.Builder
	html.Render(&b, n)
	return b.String()
}

func indexOf(lines []string, s string) int {
	for i, l := range lines {
		if l == s {
			return i
		}
	}
	return -1
}
