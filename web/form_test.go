package web

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/repermit/repermit"
)

func TestParseAnswerForm(t *testing.T) {
	topics := []string{"yoga", "events", "news"}
	for _, tc := range []struct {
		body   string
		state  repermit.State
		topics []string
		bad    bool
	}{
		{body: "choice=confirm", state: repermit.StateConfirmed, topics: topics},
		{body: "choice=confirm&topic=news&topic=yoga", state: repermit.StateConfirmed, topics: []string{"yoga", "news"}},
		{body: "choice=confirm&topic=news&topic=news", state: repermit.StateConfirmed, topics: []string{"news"}},
		{body: "choice=decline&topic=news", state: repermit.StateDeclined},
		{body: "choice=confirm&topic=Yoga", bad: true},
		{body: "choice=confirm&topic=", bad: true},
		{body: "choice=confirm&topic=knitting", bad: true},
		{body: "choice=yes", bad: true},
		{body: "", bad: true},
		{body: "choice=confirm&choice=confirm", bad: true},
	} {
		v, _ := url.ParseQuery(tc.body)
		f, err := parseAnswerForm(v, topics)
		if tc.bad {
			if repermit.ErrorCode(err) != repermit.EINVALID {
				t.Errorf("%q: err %v, want EINVALID", tc.body, err)
			}
			continue
		}
		if err != nil || f.state != tc.state || !slices.Equal(f.topics, tc.topics) {
			t.Errorf("%q: %+v %v, want %s %v", tc.body, f, err, tc.state, tc.topics)
		}
	}
	// A campaign without topics accepts no topic.
	v, _ := url.ParseQuery("choice=confirm&topic=yoga")
	if _, err := parseAnswerForm(v, nil); err == nil {
		t.Error("topic accepted by a campaign without topics")
	}
	v, _ = url.ParseQuery("choice=confirm")
	if f, err := parseAnswerForm(v, nil); err != nil || len(f.topics) != 0 {
		t.Errorf("confirm without topics: %+v %v", f, err)
	}
}

func FuzzParseAnswerForm(f *testing.F) {
	for _, s := range []string{
		"choice=confirm", "choice=decline", "choice=confirm&topic=yoga&topic=events",
		"choice=confirm&topic=yoga&topic=yoga&topic=knitting", "choice=%ff&topic=%00",
		"choice=confirm&choice=decline", "topic=yoga", "a=b&&&=&choice=confirm;topic=yoga", "",
	} {
		f.Add(s)
	}
	topics := []string{"yoga", "events"}
	f.Fuzz(func(t *testing.T, body string) {
		v, _ := url.ParseQuery(body)
		form, err := parseAnswerForm(v, topics)
		if err != nil {
			if repermit.ErrorCode(err) != repermit.EINVALID {
				t.Fatalf("error %v is not EINVALID", err)
			}
			return
		}
		if form.state != repermit.StateConfirmed && form.state != repermit.StateDeclined {
			t.Fatalf("state %q", form.state)
		}
		seen := map[string]bool{}
		for _, tp := range form.topics {
			if !slices.Contains(topics, tp) || seen[tp] {
				t.Fatalf("topics %q: not a subset of %q without duplicates", form.topics, topics)
			}
			seen[tp] = true
		}
		if form.state == repermit.StateDeclined && len(form.topics) != 0 {
			t.Fatalf("decline with topics %q", form.topics)
		}
	})
}

// TestReadFormReadsAsParseForm: the form of a browser's POST is read
// without ParseForm, to the same values and the same failures as
// ParseForm's r.PostForm, query strings and the size limit included.
func TestReadFormReadsAsParseForm(t *testing.T) {
	s := &Server{cfg: Config{MaxBodyBytes: 64}}
	for _, tc := range []struct{ target, ct, body string }{
		{"/c/t", formURLEncoded, "choice=confirm&topic=yoga&topic=news"},
		{"/c/t", formURLEncoded, ""},
		{"/c/t", formURLEncoded, "choice=%zz"},
		{"/c/t", formURLEncoded, "choice=confirm;topic=yoga"},
		{"/c/t", formURLEncoded, "choice=confirm&" + strings.Repeat("a", 64)},
		{"/c/t?answer=yes", formURLEncoded, "choice=confirm"},
		{"/c/t?choice=decline", formURLEncoded, "choice=confirm"},
		{"/c/t?a=%zz", formURLEncoded, "choice=confirm"},
		{"/c/t?a=%zz", formURLEncoded, "choice=%zz"},
		{"/u/t", formURLEncoded, "List-Unsubscribe=One-Click"},
		{"/c/t", formURLEncoded + "; charset=utf-8", "choice=confirm"},
		{"/c/t", "text/plain", "choice=confirm"},
		{"/c/t", "", "choice=confirm"},
	} {
		req := func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, tc.target, strings.NewReader(tc.body))
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			return r
		}
		got, err := s.readForm(httptest.NewRecorder(), req())

		r := req()
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, s.cfg.MaxBodyBytes)
		var want url.Values
		werr := r.ParseForm()
		if werr != nil {
			werr = formError(werr)
		} else {
			want = r.PostForm
		}
		switch {
		case (err == nil) != (werr == nil) || err != nil && httpStatus(err) != httpStatus(werr):
			t.Errorf("%s %q %q: error %v, ParseForm's %v", tc.target, tc.ct, tc.body, err, werr)
		case err == nil && !maps.EqualFunc(got, want, slices.Equal):
			t.Errorf("%s %q %q: %v, ParseForm's %v", tc.target, tc.ct, tc.body, got, want)
		}
	}
}
