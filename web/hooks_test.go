package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHooksAreMountedForPOSTOnly checks that /hooks/… reaches the ESP
// webhook handler for POST and nothing else, and that without one the path
// is a 404.
func TestHooksAreMountedForPOSTOnly(t *testing.T) {
	var got []string
	hk := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	})
	tests := []struct {
		name    string
		hooks   http.Handler
		method  string
		code    int
		reached bool
	}{
		{"POST with hooks", hk, http.MethodPost, http.StatusNoContent, true},
		{"GET with hooks", hk, http.MethodGet, http.StatusNotFound, false},
		{"POST without hooks", nil, http.MethodPost, http.StatusMethodNotAllowed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			h := newHarness(t, func(c *Config) { c.Hooks = tt.hooks })
			req := httptest.NewRequest(tt.method, "/hooks/mailgun", strings.NewReader("{}"))
			rec := httptest.NewRecorder()
			h.srv.ServeHTTP(rec, req)
			if rec.Code != tt.code || (len(got) == 1) != tt.reached {
				t.Errorf("%s /hooks/mailgun: %d, handler saw %v; want %d, reached %v", tt.method, rec.Code, got, tt.code, tt.reached)
			}
		})
	}
}
