package worker_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/repermit/repermit/bench"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// TestSendRateAgainstGoMail runs the send benchmark (engine against a plain
// go-mail loop, both to a discarding sink) when REPERMIT_BENCH_SEND names
// the number of recipients.
func TestSendRateAgainstGoMail(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("REPERMIT_BENCH_SEND"))
	if n <= 0 {
		t.Skip("set REPERMIT_BENCH_SEND=N to run")
	}
	r := redistest.New(t)
	opt := bench.SendOptions{Recipients: n}
	if path := os.Getenv("REPERMIT_BENCH_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		opt.CPUProfile = f
	}
	res, err := bench.Send(context.Background(), bench.Target{Store: redisstore.New(r.Client, r.Prefix), Prefix: r.Prefix}, opt)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
}
