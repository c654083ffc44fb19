package bench

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// tiny is the size every bench runs at in tests: enough for several
// buckets and a partial last one.
const tiny = 300

func target(t *testing.T) (Target, *redistest.Redis) {
	t.Helper()
	r := redistest.New(t)
	return Target{Store: redisstore.New(r.Client, r.Prefix), Prefix: r.Prefix, Log: testLog{t}}, r
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Logf("%s", p)
	return len(p), nil
}

// assertJSON checks that v encodes to an object with every key of keys,
// each a positive number.
func assertJSON(t *testing.T, v any, keys ...string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		x, ok := m[k]
		if !ok {
			t.Errorf("JSON %s has no key %q", b, k)
			continue
		}
		if f, ok := x.(float64); !ok || f <= 0 {
			t.Errorf("JSON key %q = %v, want a positive number (%s)", k, x, b)
		}
	}
}

func assertCleanedUp(t *testing.T, r *redistest.Redis) {
	t.Helper()
	if keys := r.Keys(t); len(keys) > 0 {
		t.Errorf("bench left %d keys behind, e.g. %q", len(keys), keys[0])
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestImportReportsEveryFigure(t *testing.T) {
	tg, r := target(t)
	res, err := Import(ctx(t), tg, tiny)
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, res, "rows", "rows_per_s", "bytes_per_recipient", "baseline_rows_per_s", "ratio")
	if res.Rows != tiny {
		t.Errorf("rows = %d, want %d", res.Rows, tiny)
	}
	if res.Shape != ShapeRealistic || res.ListStats.Domains < 20 {
		t.Errorf("shape %q with %d domains, want the realistic one", res.Shape, res.ListStats.Domains)
	}
	if redistest.Real() { // miniredis has neither OBJECT ENCODING nor INFO memory
		var buckets int64
		for _, c := range res.BucketEncodings {
			buckets += c
		}
		if want := redisstore.Buckets(tiny); buckets != want {
			t.Errorf("bucket encodings %v cover %d buckets, want %d", res.BucketEncodings, buckets, want)
		}
	}
	assertCleanedUp(t, r)
}

func TestExpireExpiresEveryRecipient(t *testing.T) {
	tg, r := target(t)
	// Expire itself fails unless the campaign counts every recipient
	// expired, so a passing run is a full expiry.
	res, err := Expire(ctx(t), tg, tiny)
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, res, "recipients", "expired_per_s", "seconds", "baseline_expired_per_s", "ratio")
	assertCleanedUp(t, r)
}

func TestRefusesForeignPrefix(t *testing.T) {
	tg, _ := target(t)
	tg.Prefix = "repermit"
	if _, err := Import(ctx(t), tg, tiny); err == nil {
		t.Fatal("Import ran under the production prefix; it deletes every key under it")
	}
}

func TestSendDeliversEveryMailOnce(t *testing.T) {
	tg, r := target(t)
	res, err := Send(ctx(t), tg, SendOptions{Recipients: tiny, Connections: 2})
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, res, "recipients", "baseline_msgs_per_s", "engine_msgs_per_s", "ratio", "launch_s", "redis_bytes_per_recipient")
	// Send checks these itself; asserting them here keeps the promise
	// visible: the engine's figure counts mails the sink really accepted.
	if res.SinkAccepted != tiny || res.SentCounted != tiny {
		t.Errorf("sink accepted %d, campaign counts %d sent, want %d each", res.SinkAccepted, res.SentCounted, tiny)
	}
	assertCleanedUp(t, r)
}

func TestWebConfirmsAreRealWrites(t *testing.T) {
	tg, r := target(t)
	res, err := Web(ctx(t), tg, WebOptions{Requests: tiny, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, res, "plain_rps", "landing_rps", "confirm_rps", "landing_ratio", "confirm_ratio", "landing_p99_ms", "confirm_p99_ms",
		"plain_cpu_us", "landing_cpu_us", "confirm_cpu_us")
	// Every request costs the process some CPU; a phase measured as free
	// was not measured.
	if res.PlainCPU <= 0 || res.LandingCPU <= 0 || res.ConfirmCPU <= 0 {
		t.Errorf("CPU per request: plain %v, landing %v, confirm %v µs; want each > 0", res.PlainCPU, res.LandingCPU, res.ConfirmCPU)
	}
	// A real Redis reports its CPU time (miniredis has none to report),
	// and every request costs it some: each landing page reads a
	// recipient, each confirmation runs a script.
	if redistest.Real() && (res.LandingRedisCPU <= 0 || res.ConfirmRedisCPU <= 0) {
		t.Errorf("Redis CPU per request: landing %v, confirm %v µs; want each > 0", res.LandingRedisCPU, res.ConfirmRedisCPU)
	}
	if res.Confirmed != tiny {
		t.Errorf("campaign counts %d confirmed after %d POSTs", res.Confirmed, tiny)
	}
	assertCleanedUp(t, r)
}
