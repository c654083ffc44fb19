package ledgerio

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit/consentlog"
)

// TestWitnessURLGetsEachCheckpoint: a URL witness receives the checkpoint
// line as a POST, and a refusal is an error (the worker sends it again).
func TestWitnessURLGetsEachCheckpoint(t *testing.T) {
	signer, v := keys(t, "acme-consent")
	msg, err := consentlog.Sign(consentlog.Checkpoint{Campaign: "c", Size: 1, Time: t0}, signer)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost && r.Header.Get("Content-Type") == "application/json" {
			got = append(got, string(b))
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	w, err := NewWitness(srv.URL + "/witness")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Publish(ctx, msg); err != nil {
		t.Fatal(err)
	}
	cps, err := ReadWitness(strings.NewReader(strings.Join(got, "")), "received", v)
	if err != nil || len(cps) != 1 || cps[0].Size != 1 {
		t.Errorf("received %q: %+v, %v", got, cps, err)
	}
	status = http.StatusServiceUnavailable
	if err := w.Publish(ctx, msg); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("refused publish: %v", err)
	}
	if _, err := NewWitness("https://"); err == nil {
		t.Error("a URL without a host is accepted")
	}
}
