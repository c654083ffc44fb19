package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"
)

// Browser follows campaign links the way a person's browser and mail client
// do: it opens the landing page, reads its form and submits it; it sends the
// RFC 8058 one-click POST for List-Unsubscribe.
type Browser struct {
	Client    *http.Client
	UserAgent string
}

// NewBrowser returns a Browser with a cookie jar and a timeout.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil) // New never fails without options
	return &Browser{
		Client:    &http.Client{Jar: jar, Timeout: 10 * time.Second},
		UserAgent: "Mozilla/5.0 (repermit demo recipient)",
	}
}

// Page is one answer of the web server.
type Page struct {
	Status int
	Body   string
}

// Get fetches a link as a browser or a mail scanner would.
func (b *Browser) Get(ctx context.Context, link string) (Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return Page{}, err
	}
	return b.do(req)
}

// Answer opens a confirm link, fills in its form with choice ("confirm" or
// "decline") and topics, and submits it. The form's own hidden fields are
// sent along; if the page has no POST form, the fields of DESIGN.md are
// posted to the link itself.
func (b *Browser) Answer(ctx context.Context, link, choice string, topics []string) (Page, error) {
	landing, err := b.Get(ctx, link)
	if err != nil {
		return landing, err
	}
	if landing.Status != http.StatusOK {
		return landing, fmt.Errorf("GET %s: status %d", link, landing.Status)
	}
	action, fields := postForm(landing.Body)
	target, err := resolve(link, action)
	if err != nil {
		return landing, err
	}
	fields.Set("choice", choice)
	fields.Del("topic")
	for _, t := range topics {
		fields.Add("topic", t)
	}
	return b.post(ctx, target, fields.Encode())
}

// Unsubscribe sends the RFC 8058 one-click POST a mail client sends for
// List-Unsubscribe-Post: List-Unsubscribe=One-Click.
func (b *Browser) Unsubscribe(ctx context.Context, link string) (Page, error) {
	return b.post(ctx, link, "List-Unsubscribe=One-Click")
}

func (b *Browser) post(ctx context.Context, link, body string) (Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, link, strings.NewReader(body))
	if err != nil {
		return Page{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *Browser) do(req *http.Request) (Page, error) {
	req.Header.Set("User-Agent", b.UserAgent)
	req.Header.Set("Accept", "text/html")
	resp, err := b.Client.Do(req)
	if err != nil {
		return Page{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Page{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	return Page{Status: resp.StatusCode, Body: string(body)}, nil
}

func resolve(base, ref string) (string, error) {
	bu, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", base, err)
	}
	if ref == "" {
		return base, nil // a form without action posts to its own page
	}
	ru, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("form action %q: %w", ref, err)
	}
	return bu.ResolveReference(ru).String(), nil
}

// postForm returns the action and the hidden fields of the first form with
// method POST on a page.
func postForm(page string) (action string, fields url.Values) {
	fields = url.Values{}
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return "", fields
	}
	var form *html.Node
	var find func(n *html.Node)
	find = func(n *html.Node) {
		if form != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" && strings.EqualFold(attr(n, "method"), "post") {
			form = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if form == nil {
		return "", fields
	}
	var collect func(n *html.Node)
	collect = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" && strings.EqualFold(attr(n, "type"), "hidden") {
			if name := attr(n, "name"); name != "" {
				fields.Add(name, attr(n, "value"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			collect(c)
		}
	}
	collect(form)
	return attr(form, "action"), fields
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
