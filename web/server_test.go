package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
	"github.com/repermit/repermit/token"
)

func TestGETNeverChangesState(t *testing.T) {
	h := newHarness(t)
	// One recipient has confirmed, so its page shows the note and form.
	wantStatus(t, "confirm 1", h.postForm(h.confirmPath(1), confirmForm("confirm")), http.StatusOK)
	before := h.dump()
	for round := 0; round < 3; round++ {
		for i := range uint32(len(locales)) {
			for _, path := range []string{h.confirmPath(i), h.confirmPath(i) + "?answer=yes", h.confirmPath(i) + "?answer=no", h.unsubPath(i)} {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					w := h.do(httptest.NewRequest(method, path, nil))
					wantStatus(t, method+" "+path, w, http.StatusOK)
				}
			}
		}
	}
	if after := h.dump(); after != before {
		t.Errorf("GET changed Redis:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestLandingPageAsksOnePlainQuestion(t *testing.T) {
	h := newHarness(t)
	w := h.get(h.confirmPath(1))
	wantStatus(t, "GET", w, http.StatusOK)
	page := w.Body.String()
	for _, want := range []string{
		`<html lang="en">`, `name="viewport"`, "ACME News", "news@acme.example",
		`name="choice" value="confirm"`, "Yes, keep me subscribed", `value="decline"`, "No, thanks",
		`name="topic" value="yoga"`, `name="topic" value="events"`, `<form method="post">`, "../static/style.css",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("landing page lacks %q", want)
		}
	}
	for _, banned := range []string{"<script", "style=", "checked", "autofocus", "r1@example.com", "Name 1", "http://"} {
		if strings.Contains(page, banned) {
			t.Errorf("landing page contains %q", banned)
		}
	}
	// The only links away are the controller's contact and privacy policy
	// (GDPR Art. 13), never a resource the browser loads by itself.
	for _, m := range regexp.MustCompile(`(?:href|src)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		switch m[1] {
		case "../static/style.css", "mailto:" + testController.Contact, testController.PrivacyURL:
		default:
			t.Errorf("landing page links %q", m[1])
		}
	}
	if got := w.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
}

func TestAnswerLinkPreselectsThatButton(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ answer, focused string }{{"yes", `value="confirm" class="primary" autofocus`}, {"no", `value="decline" class="primary" autofocus`}} {
		page := h.get(h.confirmPath(1) + "?answer=" + tc.answer).Body.String()
		if !strings.Contains(page, tc.focused) || strings.Count(page, "autofocus") != 1 {
			t.Errorf("?answer=%s: want exactly one autofocus on %q\n%s", tc.answer, tc.focused, page)
		}
	}
}

func TestPagesFollowTheRecipientsLocale(t *testing.T) {
	h := newHarness(t)
	for i, want := range map[uint32]string{0: `lang="de"`, 1: `lang="en"`, 3: `lang="fr"`, 4: `lang="de"`} {
		if page := h.get(h.confirmPath(i)).Body.String(); !strings.Contains(page, want) {
			t.Errorf("recipient %d (locale %q): page lacks %s", i, locales[i], want)
		}
	}
	if page := h.get(h.confirmPath(0)).Body.String(); !strings.Contains(page, "Ja, ich bleibe angemeldet") {
		t.Errorf("German page lacks the German yes button")
	}
	// Without a locale of its own, the browser's language decides.
	req := httptest.NewRequest(http.MethodGet, h.confirmPath(2), nil)
	req.Header.Set("Accept-Language", "de-DE,de;q=0.9,en;q=0.8")
	if page := h.do(req).Body.String(); !strings.Contains(page, `lang="de"`) {
		t.Errorf("recipient without locale, Accept-Language de: not German")
	}
}

func TestCampaignTemplatesOverrideTheDefaults(t *testing.T) {
	r := redistest.New(t)
	store := redisstore.New(r.Client, r.Prefix)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pages"), 0o755); err != nil {
		t.Fatal(err)
	}
	override := `{{define "title"}}x{{end}}{{define "main"}}<p>Eigene Seite von {{.Sender}}</p><form method="post"><button name="choice" value="confirm">Ja</button></form>{{end}}`
	if err := os.WriteFile(filepath.Join(dir, "pages", "landing.de.html"), []byte(override), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := repermit.Campaign{ID: "ovr", From: "ACME <a@acme.example>", Subject: "s", StartAt: t0, Deadline: t0.Add(24 * time.Hour), TemplatesDir: dir}
	imp, err := store.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	imp.Add(ctx, "a@example.com", "", "de", nil)
	imp.Add(ctx, "b@example.com", "", "en", nil)
	if err := imp.Commit(ctx, repermit.ImportResult{Imported: 2}); err != nil {
		t.Fatal(err)
	}
	c = imp.Campaign()
	signer, _ := token.NewSigner([][]byte{[]byte("0123456789abcdef0123456789abcdef-test")})
	srv, err := New(Config{Store: store, Signer: signer, Logger: discardLogger(), Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	get := func(idx uint32) string {
		tok := signer.Sign(token.Claims{Purpose: token.Confirm, Campaign: c.ID, CampaignSeq: c.Seq, Recipient: idx, Deadline: c.Deadline})
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/c/"+tok, nil))
		return w.Body.String()
	}
	if page := get(0); !strings.Contains(page, "Eigene Seite von ACME") || !strings.Contains(page, `lang="de"`) {
		t.Errorf("German recipient did not get the campaign's page:\n%s", page)
	}
	if page := get(1); !strings.Contains(page, "Yes, keep me subscribed") {
		t.Errorf("English recipient did not get the default page:\n%s", page)
	}
}

func TestConfirmWithTwoTopicsRecordsOneConsent(t *testing.T) {
	h := newHarness(t)
	shown := h.get(h.confirmPath(1)).Body.Bytes()
	w := h.postForm(h.confirmPath(1), confirmForm("confirm", "events", "yoga"))
	wantStatus(t, "POST", w, http.StatusOK)
	if !strings.Contains(w.Body.String(), "you stay subscribed") {
		t.Errorf("result page:\n%s", w.Body.String())
	}
	st, err := h.store.Stats(context.Background(), h.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts[repermit.StateConfirmed] != 1 || st.Counts[repermit.StateSent] != int64(len(locales))-1 {
		t.Errorf("counts %v, want one confirmed", st.Counts)
	}
	recs := h.ledger()
	if len(recs) != 1 {
		t.Fatalf("ledger has %d records, want 1", len(recs))
	}
	rec := recs[0]
	sum := sha256.Sum256(shown)
	want := repermit.ConsentRecord{Seq: 1, Campaign: h.c.ID, Recipient: 1, Answer: repermit.StateConfirmed,
		Topics: []string{"yoga", "events"}, IP: "192.0.2.0", UserAgent: "Mozilla/5.0 (test)", Wording: hex.EncodeToString(sum[:])}
	if rec.Seq != want.Seq || rec.Recipient != want.Recipient || rec.Answer != want.Answer || !slices.Equal(rec.Topics, want.Topics) ||
		rec.IP != want.IP || rec.UserAgent != want.UserAgent || rec.Wording != want.Wording || !rec.At.Equal(t0.Add(time.Hour)) {
		t.Errorf("record %+v\nwant     %+v (wording = SHA-256 of the page shown)", rec, want)
	}
	if got := h.recipient(1).Topics; !slices.Equal(got, []string{"yoga", "events"}) {
		t.Errorf("recipient topics %v", got)
	}
}

func TestConfirmWithoutTopicsKeepsAllTopics(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, "POST", h.postForm(h.confirmPath(1), confirmForm("confirm")), http.StatusOK)
	if got := h.recipient(1).Topics; !slices.Equal(got, []string{"yoga", "events"}) {
		t.Errorf("topics %v, want all", got)
	}
}

func TestReplayedAnswerChangesNothing(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, "first", h.postForm(h.confirmPath(1), confirmForm("confirm", "yoga")), http.StatusOK)
	before := h.dump()
	for _, form := range []url.Values{confirmForm("confirm", "yoga"), confirmForm("confirm", "yoga", "yoga")} {
		w := h.postForm(h.confirmPath(1), form)
		wantStatus(t, "replay", w, http.StatusOK)
		if !strings.Contains(w.Body.String(), "recorded this answer before") || !strings.Contains(w.Body.String(), "yoga") {
			t.Errorf("replay page does not show the recorded answer:\n%s", w.Body.String())
		}
	}
	if after := h.dump(); after != before {
		t.Errorf("replay changed Redis:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestConfirmedRecipientMayStillDecline(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, "confirm", h.postForm(h.confirmPath(1), confirmForm("confirm")), http.StatusOK)
	if page := h.get(h.confirmPath(1)).Body.String(); !strings.Contains(page, `You answered “yes”`) {
		t.Errorf("landing page of a confirmed recipient lacks the note:\n%s", page)
	}
	w := h.postForm(h.confirmPath(1), confirmForm("decline"))
	wantStatus(t, "decline", w, http.StatusOK)
	if rec := h.recipient(1); rec.State != repermit.StateDeclined || rec.Email != "" {
		t.Errorf("after decline: %+v", rec)
	}
	// Declined is final: a confirm now changes nothing.
	before := h.dump()
	w = h.postForm(h.confirmPath(1), confirmForm("confirm"))
	wantStatus(t, "confirm after decline", w, http.StatusOK)
	if !strings.Contains(w.Body.String(), "will not write to you again") {
		t.Errorf("confirm after decline shows:\n%s", w.Body.String())
	}
	if after := h.dump(); after != before {
		t.Error("confirm after decline changed Redis")
	}
	if n := len(h.ledger()); n != 2 {
		t.Errorf("ledger has %d records, want 2", n)
	}
}

func TestBadFormIs400AndWritesNothing(t *testing.T) {
	h := newHarness(t)
	before := h.dump()
	for name, form := range map[string]url.Values{
		"unknown topic":  confirmForm("confirm", "yoga", "knitting"),
		"no choice":      {"topic": {"yoga"}},
		"unknown choice": confirmForm("maybe"),
		"two choices":    {"choice": {"confirm", "decline"}},
	} {
		wantStatus(t, name, h.postForm(h.confirmPath(1), form), http.StatusBadRequest)
	}
	if after := h.dump(); after != before {
		t.Error("a bad form changed Redis")
	}
}

func TestBadTokensGet404WithoutAnyRedisCommand(t *testing.T) {
	h := newHarness(t)
	good := h.token(token.Confirm, 1)
	tampered := []byte(good)
	tampered[10] ^= 1
	for name, path := range map[string]string{
		"forged":        "/c/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"truncated":     "/c/" + good[:len(good)-1],
		"tampered":      "/c/" + string(tampered),
		"padded":        "/c/" + good + "A",
		"wrong purpose": "/c/" + h.token(token.Unsubscribe, 1),
		"confirm on /u": "/u/" + good,
		"empty-ish":     "/c/x",
	} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			before := h.commands.Load()
			var w *httptest.ResponseRecorder
			if method == http.MethodGet {
				w = h.get(path)
			} else {
				w = h.postForm(path, confirmForm("confirm"))
			}
			wantStatus(t, name+" "+method, w, http.StatusNotFound)
			if n := h.commands.Load() - before; n != 0 {
				t.Errorf("%s %s: %d Redis commands, want none", name, method, n)
			}
			if !strings.Contains(w.Body.String(), "We do not know this link") {
				t.Errorf("%s: not the 404 page", name)
			}
		}
	}
}

// TestTokensOfOtherCampaignsOrRecipientsGet404WithoutWrites signs, for
// each page, a token of that page's purpose, so that each request passes
// the purpose check and reaches the lookup it is about.
func TestTokensOfOtherCampaignsOrRecipientsGet404WithoutWrites(t *testing.T) {
	h := newHarness(t)
	before := h.dump()
	other, err := token.NewSigner([][]byte{[]byte("another secret of at least thirty-two bytes")})
	if err != nil {
		t.Fatal(err)
	}
	for name, sign := range map[string]func(token.Purpose) string{
		"unknown campaign": func(p token.Purpose) string {
			return h.signer.Sign(token.Claims{Purpose: p, Campaign: h.c.ID, CampaignSeq: h.c.Seq + 1000, Recipient: 1, Deadline: h.c.Deadline})
		},
		"unknown recipient": func(p token.Purpose) string { return h.token(p, 99999) },
		"same number, another campaign id": func(p token.Purpose) string {
			return h.signer.Sign(token.Claims{Purpose: p, Campaign: h.c.ID + "-old", CampaignSeq: h.c.Seq, Recipient: 1, Deadline: h.c.Deadline})
		},
		"signed by another key": func(p token.Purpose) string {
			return other.Sign(token.Claims{Purpose: p, Campaign: h.c.ID, CampaignSeq: h.c.Seq, Recipient: 1, Deadline: h.c.Deadline})
		},
	} {
		confirm, unsub := sign(token.Confirm), sign(token.Unsubscribe)
		wantStatus(t, name+" GET /c", h.get("/c/"+confirm), http.StatusNotFound)
		wantStatus(t, name+" POST /c", h.postForm("/c/"+confirm, confirmForm("confirm")), http.StatusNotFound)
		wantStatus(t, name+" GET /u", h.get("/u/"+unsub), http.StatusNotFound)
		wantStatus(t, name+" POST /u", h.postForm("/u/"+unsub, url.Values{"List-Unsubscribe": {"One-Click"}}), http.StatusNotFound)
	}
	if after := h.dump(); after != before {
		t.Errorf("bad tokens changed Redis:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestAfterTheDeadlineLinksAreGone(t *testing.T) {
	h := newHarness(t)
	paths := []string{h.confirmPath(1), h.unsubPath(1)}
	h.setNow(h.c.Deadline.Add(time.Second))
	before := h.dump()
	for _, p := range paths {
		wantStatus(t, "GET "+p, h.get(p), http.StatusGone)
		wantStatus(t, "POST "+p, h.postForm(p, confirmForm("confirm")), http.StatusGone)
	}
	// Reads only: a confirmed recipient may still withdraw, so the state
	// is looked up; nothing is written for the unanswered.
	if after := h.dump(); after != before {
		t.Errorf("late links changed Redis:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestCampaignDeadlineIsCheckedBesideTheTokens(t *testing.T) {
	h := newHarness(t)
	// A token whose own deadline is later than the campaign's.
	tok := h.signer.Sign(token.Claims{Purpose: token.Confirm, Campaign: h.c.ID, CampaignSeq: h.c.Seq, Recipient: 1, Deadline: h.c.Deadline.Add(time.Hour)})
	h.setNow(h.c.Deadline.Add(time.Minute))
	wantStatus(t, "GET", h.get("/c/"+tok), http.StatusGone)
	wantStatus(t, "POST", h.postForm("/c/"+tok, confirmForm("confirm")), http.StatusGone)
	if rec := h.recipient(1); rec.State != repermit.StateSent {
		t.Errorf("state %s after a late answer", rec.State)
	}
}

func TestExpiredRecipientGets410(t *testing.T) {
	h := newHarness(t)
	if _, _, err := h.store.ExpireBucket(context.Background(), h.c.ID, 0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "GET /c", h.get(h.confirmPath(1)), http.StatusGone)
	wantStatus(t, "GET /u", h.get(h.unsubPath(1)), http.StatusGone)
	wantStatus(t, "POST /c", h.postForm(h.confirmPath(1), confirmForm("confirm")), http.StatusGone)
	wantStatus(t, "POST /u", h.postForm(h.unsubPath(1), url.Values{"List-Unsubscribe": {"One-Click"}}), http.StatusGone)
}

func TestFinishedCampaignGets410(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CampaignCacheTTL = -1 })
	if err := h.store.SetStatus(context.Background(), h.c.ID, repermit.StatusFinished, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "GET", h.get(h.confirmPath(1)), http.StatusGone)
}

func TestOneClickUnsubscribe(t *testing.T) {
	h := newHarness(t)
	// RFC 8058: URL-encoded body, no cookies, from a mail client.
	req := httptest.NewRequest(http.MethodPost, h.unsubPath(1), strings.NewReader("List-Unsubscribe=One-Click"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, "one-click", h.do(req), http.StatusOK)
	// The same as multipart/form-data, which RFC 8058 also allows.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("List-Unsubscribe", "One-Click")
	mw.Close()
	req = httptest.NewRequest(http.MethodPost, h.unsubPath(2), &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	wantStatus(t, "one-click multipart", h.do(req), http.StatusOK)
	// A confirmed recipient may unsubscribe too.
	wantStatus(t, "confirm 3", h.postForm(h.confirmPath(3), confirmForm("confirm")), http.StatusOK)
	wantStatus(t, "one-click 3", h.postForm(h.unsubPath(3), url.Values{"List-Unsubscribe": {"One-Click"}}), http.StatusOK)
	for _, i := range []int64{1, 2, 3} {
		if rec := h.recipient(i); rec.State != repermit.StateUnsubscribed || rec.Email != "" {
			t.Errorf("recipient %d: %+v, want unsubscribed and erased", i, rec)
		}
	}
	sup, err := h.store.IsSuppressed(context.Background(), []string{repermit.AddressHash("r1@example.com")})
	if err != nil || !sup[0] {
		t.Errorf("unsubscribed address not suppressed: %v %v", sup, err)
	}
	for _, rec := range h.ledger() {
		if rec.Answer == repermit.StateUnsubscribed && rec.Wording != "" {
			t.Errorf("one-click record %d claims a wording was shown", rec.Seq)
		}
	}
}

func TestUnsubscribePageRecordsItsWording(t *testing.T) {
	h := newHarness(t)
	w := h.get(h.unsubPath(1))
	wantStatus(t, "GET /u", w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `name="from" value="page"`) {
		t.Fatalf("unsubscribe page lacks its form:\n%s", w.Body.String())
	}
	sum := sha256.Sum256(w.Body.Bytes())
	wantStatus(t, "POST /u", h.postForm(h.unsubPath(1), url.Values{"List-Unsubscribe": {"One-Click"}, "from": {"page"}}), http.StatusOK)
	recs := h.ledger()
	if len(recs) != 1 || recs[0].Wording != hex.EncodeToString(sum[:]) {
		t.Errorf("ledger %+v, want one record with the page's hash", recs)
	}
	if page := h.get(h.unsubPath(1)).Body.String(); !strings.Contains(page, "You are unsubscribed") {
		t.Errorf("GET /u after unsubscribing:\n%s", page)
	}
}

func TestAdminNeedsTheBearerToken(t *testing.T) {
	h := newHarness(t)
	for name, hdr := range map[string]string{"no header": "", "wrong token": "Bearer nope", "no scheme": adminToken, "basic": "Basic " + adminToken} {
		for _, path := range []string{"/admin/campaigns", "/admin/campaigns/camp", "/admin/", "/admin/nothing"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			if hdr != "" {
				req.Header.Set("Authorization", hdr)
			}
			w := h.do(req)
			wantStatus(t, name+" "+path, w, http.StatusUnauthorized)
			if strings.Contains(w.Body.String(), "camp") {
				t.Errorf("%s %s: 401 page shows campaign data", name, path)
			}
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/admin/campaigns", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	w := h.do(req)
	wantStatus(t, "admin list", w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `href="campaigns/camp"`) {
		t.Errorf("admin list lacks the campaign:\n%s", w.Body.String())
	}
	wantStatus(t, "confirm", h.postForm(h.confirmPath(1), confirmForm("confirm")), http.StatusOK)
	req = httptest.NewRequest(http.MethodGet, "/admin/campaigns/camp", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	w = h.do(req)
	wantStatus(t, "admin campaign", w, http.StatusOK)
	for _, want := range []string{"<td>confirmed</td><td class=\"n\">1</td>", "<td>sent</td><td class=\"n\">4</td>", "20.0 %"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("funnel lacks %q:\n%s", want, w.Body.String())
		}
	}
	req = httptest.NewRequest(http.MethodGet, "/admin/campaigns/nope", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	wantStatus(t, "unknown campaign", h.do(req), http.StatusNotFound)
}

func TestAdminWithoutConfiguredTokenRefusesEveryone(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AdminToken = "" })
	for _, hdr := range []string{"", "Bearer ", "Bearer x"} {
		req := httptest.NewRequest(http.MethodGet, "/admin/campaigns", nil)
		req.Header.Set("Authorization", hdr)
		wantStatus(t, "header "+hdr, h.do(req), http.StatusUnauthorized)
	}
}

// deadStore is a store whose Redis does not answer.
func deadStore(t *testing.T) *redisstore.Store {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	return redisstore.New(rdb, "dead")
}

func TestRedisGoneGives503(t *testing.T) {
	h := newHarness(t)
	srv, err := New(Config{Store: deadStore(t), Signer: h.signer, Logger: discardLogger(), Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(req *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w
	}
	w := serve(httptest.NewRequest(http.MethodGet, h.confirmPath(1), nil))
	wantStatus(t, "GET", w, http.StatusServiceUnavailable)
	if w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "try again") {
		t.Errorf("503 page: %v\n%s", w.Header(), w.Body.String())
	}
	req := httptest.NewRequest(http.MethodPost, h.confirmPath(1), strings.NewReader("choice=confirm"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, "POST", serve(req), http.StatusServiceUnavailable)
	wantStatus(t, "healthz", serve(httptest.NewRequest(http.MethodGet, "/healthz", nil)), http.StatusServiceUnavailable)
	wantStatus(t, "healthz up", h.get("/healthz"), http.StatusOK)

	if h.r.Mini != nil {
		// The campaign is cached; the recipient read then meets a closed server.
		wantStatus(t, "warm cache", h.get(h.confirmPath(1)), http.StatusOK)
		h.r.Mini.Close()
		wantStatus(t, "miniredis closed", h.postForm(h.confirmPath(1), confirmForm("confirm")), http.StatusServiceUnavailable)
	}
}

func TestSlowRedisGives503(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RequestTimeout = 50 * time.Millisecond; c.CampaignCacheTTL = -1 })
	h.r.Client.AddHook(slowHook{})
	wantStatus(t, "GET", h.get(h.confirmPath(1)), http.StatusServiceUnavailable)
}

type slowHook struct{}

func (slowHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (slowHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			cmd.SetErr(ctx.Err())
			return ctx.Err()
		}
		return next(ctx, cmd)
	}
}
func (slowHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestSecurityHeadersOnEveryPage(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{h.confirmPath(1), h.unsubPath(1), "/c/forged", "/nothing-here", "/healthz"} {
		w := h.get(path)
		for k, v := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"Referrer-Policy":         "no-referrer",
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Cache-Control":           "no-store",
		} {
			if got := w.Header().Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
	w := h.get("/static/style.css")
	wantStatus(t, "css", w, http.StatusOK)
	if ct := w.Header().Get("Content-Type"); ct != "text/css; charset=utf-8" || !strings.Contains(w.Body.String(), "button") {
		t.Errorf("style.css: %q", ct)
	}
	// The stylesheet's own Cache-Control changed no other answer's: the
	// header values are shared between answers.
	if got := w.Header().Get("Cache-Control"); got != "public, max-age=86400" {
		t.Errorf("style.css: Cache-Control %q", got)
	}
	if got := h.get(h.confirmPath(1)).Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("a page after the stylesheet: Cache-Control %q, want no-store", got)
	}
}

func TestNothingRedirects(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/admin", "/c/", "/u", "//evil.example/", "/c/x?next=https://evil.example/", "/static/"} {
		if w := h.get(path); w.Code >= 300 && w.Code < 400 {
			t.Errorf("GET %s redirects to %q", path, w.Header().Get("Location"))
		}
	}
}

func TestLargeBodyIs413(t *testing.T) {
	h := newHarness(t)
	form := confirmForm("confirm")
	form.Set("pad", strings.Repeat("x", 9<<10))
	before := h.dump()
	wantStatus(t, "POST", h.postForm(h.confirmPath(1), form), http.StatusRequestEntityTooLarge)
	if h.dump() != before {
		t.Error("an oversized POST changed Redis")
	}
}

func TestPOSTsAreRateLimitedPerClient(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RatePerSecond = 0.001; c.RateBurst = 2 })
	post := func(remote string) int {
		req := httptest.NewRequest(http.MethodPost, h.unsubPath(1), strings.NewReader("List-Unsubscribe=One-Click"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = remote
		return h.do(req).Code
	}
	codes := []int{post("198.51.100.1:1"), post("198.51.100.1:2"), post("198.51.100.1:3"), post("198.51.100.2:1")}
	if want := []int{200, 200, 429, 200}; !slices.Equal(codes, want) {
		t.Errorf("codes %v, want %v", codes, want)
	}
	// GET is never limited: scanners open links many times.
	for range 5 {
		wantStatus(t, "GET", h.get(h.confirmPath(2)), http.StatusOK)
	}
}

func TestMetricsCountAnswersAndRequests(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, "confirm", h.postForm(h.confirmPath(1), confirmForm("confirm")), http.StatusOK)
	wantStatus(t, "replay", h.postForm(h.confirmPath(1), confirmForm("confirm")), http.StatusOK)
	wantStatus(t, "forged", h.get("/c/forged"), http.StatusNotFound)
	w := h.get("/metrics")
	wantStatus(t, "metrics", w, http.StatusOK)
	for _, want := range []string{
		`repermit_answers_total{kind="confirmed"} 1`,
		`repermit_http_requests_total{code="200",route="POST /c/{token}"} 2`,
		`repermit_http_requests_total{code="404",route="GET /c/{token}"} 1`,
	} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(w.Body.String(), h.token(token.Confirm, 1)) {
		t.Error("a token leaked into the metrics")
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	ts := httptest.NewUnstartedServer(nil) // only for its listener
	ln := ts.Listener
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	h := newHarness(t)
	for name, cfg := range map[string]Config{
		"no store":   {Signer: h.signer},
		"no signer":  {Store: h.store},
		"bad ipmode": {Store: h.store, Signer: h.signer, IPMode: "half"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestAdminFailuresAreThrottledPerClient: a client that keeps sending wrong
// admin tokens is answered 429 after a burst, then even with the right
// token, while another client still gets in.
func TestAdminFailuresAreThrottledPerClient(t *testing.T) {
	h := newHarness(t)
	adminGet := func(from, tok string) int {
		req := httptest.NewRequest(http.MethodGet, "/admin/campaigns", nil)
		req.RemoteAddr = from
		req.Header.Set("Authorization", "Bearer "+tok)
		return h.do(req).Code
	}
	const attacker, other = "198.51.100.7:4000", "203.0.113.9:5000"
	counts := map[int]int{}
	for i := 0; i < 200; i++ {
		counts[adminGet(attacker, fmt.Sprintf("guess-%d", i))]++
	}
	if counts[http.StatusUnauthorized] > AdminFailureBurst || counts[http.StatusTooManyRequests] < 200-AdminFailureBurst {
		t.Errorf("200 wrong tokens from one client: %v, want at most %d 401s, then 429s", counts, AdminFailureBurst)
	}
	if code := adminGet(attacker, adminToken); code != http.StatusTooManyRequests {
		t.Errorf("right token from the throttled client: %d, want 429", code)
	}
	if code := adminGet(other, adminToken); code != http.StatusOK {
		t.Errorf("right token from another client: %d, want 200", code)
	}
	if code := adminGet(other, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("one wrong token from another client: %d, want 401", code)
	}
}

// TestAdminHandlerAndPublicHandlerServeTheirOwnPaths: the recipients'
// handler knows nothing of /admin and /metrics (also spelled otherwise),
// the admin handler nothing of the recipients' pages.
func TestAdminHandlerAndPublicHandlerServeTheirOwnPaths(t *testing.T) {
	h := newHarness(t)
	do := func(hd http.Handler, path string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		w := httptest.NewRecorder()
		hd.ServeHTTP(w, req)
		return w.Code
	}
	pub, adm := h.srv.PublicHandler(), h.srv.AdminHandler()
	for _, tc := range []struct {
		path     string
		pub, adm int
	}{
		{"/admin/campaigns", 404, 200},
		{"/admin/", 404, 200},
		{"/admin", 404, 404},
		{"/%61dmin/campaigns", 404, 200},
		{"/metrics", 404, 200},
		{"/%6detrics", 404, 200},
		{"/healthz", 200, 200},
		{h.confirmPath(1), 200, 404},
		{h.unsubPath(1), 200, 404},
		{"/static/style.css", 200, 404},
	} {
		if got := do(pub, tc.path); got != tc.pub {
			t.Errorf("public %s: %d, want %d", tc.path, got, tc.pub)
		}
		if got := do(adm, tc.path); got != tc.adm {
			t.Errorf("admin %s: %d, want %d", tc.path, got, tc.adm)
		}
	}
}

// TestBehindATrustedProxyEachClientHasItsOwnBucketAndIP: two recipients
// behind one reverse proxy are limited apart, and each consent record
// keeps the recipient's address, not the proxy's.
func TestBehindATrustedProxyEachClientHasItsOwnBucketAndIP(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.RatePerSecond, c.RateBurst = 0.001, 2
		c.IPMode = IPFull
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	})
	post := func(client string, idx uint32) int {
		req := httptest.NewRequest(http.MethodPost, h.confirmPath(idx), strings.NewReader(confirmForm("confirm").Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "6.6.6.6, "+client) // the left entry is the client's own word
		return h.do(req).Code                                 // from 192.0.2.1, the proxy
	}
	codes := []int{post("198.51.100.1", 1), post("198.51.100.1", 1), post("198.51.100.1", 1), post("198.51.100.2", 2)}
	if want := []int{200, 200, 429, 200}; !slices.Equal(codes, want) {
		t.Errorf("codes %v, want %v", codes, want)
	}
	ips := map[string]bool{}
	for _, rec := range h.ledger() {
		ips[rec.IP] = true
	}
	if !ips["198.51.100.1"] || !ips["198.51.100.2"] || len(ips) != 2 {
		t.Errorf("consent records keep the addresses %v, want 198.51.100.1 and 198.51.100.2", ips)
	}
}

// TestResultPagesAreKeptOnlyWhereTheyCannotDiffer: the built-in result
// page shows the answer's time to the minute, so the server keeps it per
// minute, state, topics and language; a campaign's own result page may
// show anything and is rendered for every answer. A kept page is the page
// a server with no kept pages renders for the same answer.
func TestResultPagesAreKeptOnlyWhereTheyCannotDiffer(t *testing.T) {
	own := `{{define "title"}}r{{end}}{{define "main"}}<p>recorded at {{.Answer.At.Format "15:04:05.000"}}{{if not .Changed}} before{{end}}</p>{{end}}`
	for _, tc := range []struct {
		name   string
		result string // the campaign's result.html; "" for the built-in page
	}{
		{"built-in page", ""},
		{"campaign's own page", own},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := repermit.Campaign{ID: "res", From: "ACME News <news@acme.example>", Subject: "ACME News",
				StartAt: t0, Deadline: t0.Add(24 * time.Hour), Topics: []string{"yoga", "events"}, Controller: testController}
			if tc.result != "" {
				c.TemplatesDir = t.TempDir()
				if err := os.MkdirAll(filepath.Join(c.TemplatesDir, "pages"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(c.TemplatesDir, "pages", "result.html"), []byte(tc.result), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			h := newCampaignHarness(t, c, []string{"en", "en", "en", "en"})
			// A second web process over the same Redis, with nothing kept.
			cold, err := New(Config{Store: h.store, Signer: h.signer, Logger: discardLogger(), Registry: prometheus.NewRegistry(),
				Now: func() time.Time { return *h.now.Load() }})
			if err != nil {
				t.Fatal(err)
			}
			answer := func(srv *Server, idx uint32, at time.Time) string {
				t.Helper()
				h.setNow(at)
				req := httptest.NewRequest(http.MethodPost, h.confirmPath(idx), strings.NewReader(confirmForm("confirm", "yoga").Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, req)
				wantStatus(t, fmt.Sprintf("answer of recipient %d", idx), w, http.StatusOK)
				return w.Body.String()
			}
			at := t0.Add(time.Hour + 5*time.Second)
			first := answer(h.srv, 0, at)
			kept := answer(h.srv, 1, at.Add(20*time.Second))
			fresh := answer(cold, 2, at.Add(20*time.Second))
			replay := answer(h.srv, 1, at.Add(20*time.Second))
			later := answer(h.srv, 3, at.Add(time.Minute))
			if kept != fresh {
				t.Errorf("page of the second answer differs from the same page rendered afresh:\n%s\n---\n%s", kept, fresh)
			}
			if (first == kept) != (tc.result == "") {
				t.Errorf("answers 20 s apart in one minute got the same page: %v, want %v\n%s\n---\n%s", first == kept, tc.result == "", first, kept)
			}
			if replay == kept {
				t.Errorf("a replayed answer got the page of a recorded one:\n%s", replay)
			}
			if later == kept {
				t.Errorf("an answer a minute later got the page of the minute before:\n%s", later)
			}
		})
	}
}
