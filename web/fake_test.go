package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
)

// fakeStore is an in-memory Store of one campaign whose recipients have
// all been mailed; it keeps every answer Record is given. These tests check
// what the handlers ask of the store in milliseconds; the harness's tests
// check the same pages against real Redis.
type fakeStore struct {
	c       repermit.Campaign
	ping    error
	readErr error

	mu      sync.Mutex
	rs      []*repermit.Recipient
	answers []redisstore.Answer
}

func newFakeStore(n int) *fakeStore {
	f := &fakeStore{c: repermit.Campaign{ID: "camp", Seq: 7, From: "ACME News <news@acme.example>", Subject: "ACME News",
		StartAt: t0, Deadline: t0.Add(24 * time.Hour), Topics: []string{"yoga", "events"}, Controller: testController}}
	for i := range n {
		f.rs = append(f.rs, &repermit.Recipient{Campaign: "camp", Index: int64(i), Email: "r@example.com", Locale: "en", State: repermit.StateSent, Step: 1})
	}
	return f
}

func (f *fakeStore) Ping(context.Context) error { return f.ping }

func (f *fakeStore) CampaignBySeq(_ context.Context, seq uint32) (*repermit.Campaign, error) {
	if seq != f.c.Seq {
		return nil, repermit.Errorf(repermit.ENOTFOUND, "no campaign %d", seq)
	}
	c := f.c
	return &c, nil
}

func (f *fakeStore) Recipient(_ context.Context, id string, idx int64) (*repermit.Recipient, error) {
	if f.readErr != nil {
		return nil, f.readErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != f.c.ID || idx < 0 || idx >= int64(len(f.rs)) {
		return nil, repermit.Errorf(repermit.ENOTFOUND, "no recipient %d", idx)
	}
	r := *f.rs[idx]
	return &r, nil
}

// Record applies the answer as the script does for a mailed recipient:
// the first answer changes the state, a replay changes nothing.
func (f *fakeStore) Record(_ context.Context, a redisstore.Answer) (redisstore.AnswerResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers = append(f.answers, a)
	r := f.rs[a.Index]
	changed := r.State == repermit.StateSent
	if changed {
		r.State, r.Topics, r.AnsweredAt = a.State, a.Topics, a.At
	}
	cp := *r
	return redisstore.AnswerResult{Recipient: &cp, Changed: changed}, nil
}

func (f *fakeStore) Campaigns(context.Context) ([]string, error) { return []string{f.c.ID}, nil }
func (f *fakeStore) Campaign(context.Context, string) (*repermit.Campaign, error) {
	c := f.c
	return &c, nil
}
func (f *fakeStore) Stats(context.Context, string) (redisstore.Stats, error) {
	return redisstore.Stats{}, errors.New("fakeStore: no stats")
}
func (f *fakeStore) Timeline(context.Context, string) (map[repermit.State]map[time.Time]int64, error) {
	return nil, errors.New("fakeStore: no timeline")
}
func (f *fakeStore) WavesReport(context.Context, *repermit.Campaign) (*redisstore.WavesReport, error) {
	return nil, errors.New("fakeStore: no waves")
}

func (f *fakeStore) recorded() []redisstore.Answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]redisstore.Answer(nil), f.answers...)
}

// fakeServer is a web server over f whose clock stands at t0 + 1h.
func fakeServer(t *testing.T, f *fakeStore) (*Server, func(purpose token.Purpose, idx uint32) string) {
	t.Helper()
	signer, err := token.NewSigner([][]byte{[]byte("0123456789abcdef0123456789abcdef-test")})
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	s, err := New(Config{Store: f, Signer: signer, Logger: discardLogger(), Now: func() time.Time { return now }, RatePerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	path := func(p token.Purpose, idx uint32) string {
		prefix := "/c/"
		if p == token.Unsubscribe {
			prefix = "/u/"
		}
		return prefix + signer.Sign(token.Claims{Purpose: p, Campaign: f.c.ID, CampaignSeq: f.c.Seq, Recipient: idx, Deadline: f.c.Deadline})
	}
	return s, path
}

func serve(s *Server, method, path string, form url.Values) *httptest.ResponseRecorder {
	var req *http.Request
	if form == nil {
		req = httptest.NewRequest(method, path, nil)
	} else {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("User-Agent", "Mozilla/5.0 (test)")
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w
}

// TestGETNeverRecordsAnAnswer: a mail scanner that opens every link must
// not answer for the recipient; only the POST of the form does, once.
func TestGETNeverRecordsAnAnswer(t *testing.T) {
	f := newFakeStore(3)
	s, path := fakeServer(t, f)
	for _, p := range []string{path(token.Confirm, 2), path(token.Confirm, 2) + "?answer=yes", path(token.Unsubscribe, 2)} {
		if w := serve(s, http.MethodGet, p, nil); w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", p, w.Code, w.Body)
		}
	}
	if got := f.recorded(); len(got) != 0 {
		t.Fatalf("GETs recorded %d answers: %+v", len(got), got)
	}

	w := serve(s, http.MethodPost, path(token.Confirm, 2), url.Values{"choice": {"confirm"}, "topic": {"yoga"}})
	if w.Code != http.StatusOK {
		t.Fatalf("POST: %d\n%s", w.Code, w.Body)
	}
	got := f.recorded()
	if len(got) != 1 {
		t.Fatalf("POST recorded %d answers, want 1", len(got))
	}
	a := got[0]
	if a.Campaign != "camp" || a.Index != 2 || a.State != repermit.StateConfirmed || !reflect.DeepEqual(a.Topics, []string{"yoga"}) ||
		!a.At.Equal(t0.Add(time.Hour)) || a.WordingSHA256 == "" || a.UserAgent == "" {
		t.Errorf("recorded %+v; want recipient 2 of camp confirmed for yoga at the server's clock, with the page's wording hash and the user agent", a)
	}
	if a.Current == nil || a.Current.Index != 2 {
		t.Errorf("Record was not handed the recipient just read: %+v", a.Current)
	}
}

// TestStoreFailuresAreA503 holds for the health check and the pages: a
// store that does not answer is "try again", never "not found".
func TestStoreFailuresAreA503(t *testing.T) {
	down := repermit.Errorf(repermit.EUNAVAILABLE, "redis does not answer")
	for _, tc := range []struct {
		name       string
		ping, read error
		method     string
		path       func(func(token.Purpose, uint32) string) string
		want       int
	}{
		{"healthz up", nil, nil, http.MethodGet, func(func(token.Purpose, uint32) string) string { return "/healthz" }, 200},
		{"healthz down", down, nil, http.MethodGet, func(func(token.Purpose, uint32) string) string { return "/healthz" }, 503},
		{"landing", nil, down, http.MethodGet, func(p func(token.Purpose, uint32) string) string { return p(token.Confirm, 0) }, 503},
		{"unknown recipient", nil, nil, http.MethodGet, func(p func(token.Purpose, uint32) string) string { return p(token.Confirm, 9) }, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStore(1)
			f.ping, f.readErr = tc.ping, tc.read
			s, path := fakeServer(t, f)
			if w := serve(s, tc.method, tc.path(path), nil); w.Code != tc.want {
				t.Errorf("%s: %d, want %d\n%s", tc.name, w.Code, tc.want, w.Body)
			}
			if n := len(f.recorded()); n != 0 {
				t.Errorf("%d answers recorded", n)
			}
		})
	}
}
