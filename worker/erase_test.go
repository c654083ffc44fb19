package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/smtpsink"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dumpRedis reads every key of the Redis, by type, and returns one text
// with all names and values: the store's keys, asynq's queue keys (tasks,
// archived errors, all named asynq:{prefix}:…) and asynq's keys of no
// queue (asynq:servers:…, asynq:workers:… with the running tasks'
// payloads) alike, and whatever other tests sharing the Redis keep. The
// caller searches it for whole addresses of a domain of its own, which
// nothing else writes.
func dumpRedis(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	n := 0
	for iter.Next(ctx) {
		key := iter.Val()
		n++
		typ := rdb.Type(ctx, key).Val()
		fmt.Fprintf(&b, "%s (%s):", key, typ)
		switch typ {
		case "none": // gone since the scan (the worker still runs)
		case "string":
			b.WriteString(rdb.Get(ctx, key).Val())
		case "hash":
			for f, v := range rdb.HGetAll(ctx, key).Val() {
				fmt.Fprintf(&b, " %s=%s", f, v)
			}
		case "list":
			fmt.Fprint(&b, rdb.LRange(ctx, key, 0, -1).Val())
		case "set":
			fmt.Fprint(&b, rdb.SMembers(ctx, key).Val())
		case "zset":
			for _, z := range rdb.ZRangeWithScores(ctx, key, 0, -1).Val() {
				fmt.Fprintf(&b, " %v:%v", z.Member, z.Score)
			}
		case "stream":
			for _, m := range rdb.XRange(ctx, key, "-", "+").Val() {
				fmt.Fprintf(&b, " %s:%v", m.ID, m.Values)
			}
		default:
			t.Errorf("key %s of type %s is not read", key, typ)
		}
		b.WriteByte('\n')
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("empty Redis")
	}
	return b.String()
}

// TestNoErasedAddressSurvivesInRedisOrLogs: the SMTP server refuses the
// first mail with a 5xx that quotes the address (as many do), which pauses
// the campaign and archives the send task with that reply as its error;
// after resume, the deadline expires and erases every silent recipient.
// Then no erased address may be found anywhere in a dump of the whole
// Redis, asynq's keys included, nor in the worker's log.
func TestNoErasedAddressSurvivesInRedisOrLogs(t *testing.T) {
	const n = 30
	var rejecting atomic.Bool
	rejecting.Store(true)
	e := newEnv(t, smtpsink.Options{RejectData: func(_ string, to []string) *smtp.SMTPError {
		if !rejecting.Load() {
			return nil
		}
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message to <" + to[0] + "> rejected as spam: " + to[0]}
	}})
	domain := func(int) string { return e.r.Prefix + ".erase.example" }
	var logs lockedBuffer
	cfg := e.config()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	start := time.Now()
	c := e.launch(repermit.Campaign{StartAt: start, Deadline: start.Add(4 * time.Second)}, n, domain)
	e.start(cfg)
	e.waitFor("campaign paused by the 5xx", 3*time.Second, func() bool { return e.status(c.ID) == repermit.StatusPaused })
	e.waitFor("the send task that met the 5xx archived before the resume", 5*time.Second, func() bool {
		return e.tasks(TypeSend, "archived") > 0
	})
	rejecting.Store(false)
	if err := e.store.SetStatus(context.Background(), c.ID, repermit.StatusRunning, repermit.StatusPaused); err != nil {
		t.Fatal(err)
	}
	e.waitFor("campaign finished", 15*time.Second, func() bool { return e.status(c.ID) == repermit.StatusFinished })
	st := e.stats(c.ID)
	if st.Counts[repermit.StateExpired] == 0 {
		t.Fatalf("nobody expired: %v", st.Counts)
	}
	ctx := context.Background()
	var erased []string
	for i := 0; i < n; i++ {
		r, err := e.store.Recipient(ctx, c.ID, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if r.State == repermit.StateExpired {
			erased = append(erased, addr(i, domain))
		}
	}
	dump := dumpRedis(t, e.r.Client)
	if !strings.Contains(dump, "asynq:servers") {
		t.Errorf("the dump lacks asynq's keys of no queue:\n%s", dump)
	}
	if !strings.Contains(dump, "rejected as spam") {
		t.Errorf("the archived task lost the SMTP reply itself; only the address should go:\n%s", dump)
	}
	log := logs.String()
	if !strings.Contains(log, "rejected as spam") {
		t.Errorf("the pause is not logged with the SMTP reply:\n%s", log)
	}
	// The whole address is searched for, case-insensitively: a local part
	// alone ("r9@", three bytes) turns up by chance in the binary hashes of
	// the suppression log, the domain is this test's own.
	lowerDump, lowerLog := strings.ToLower(dump), strings.ToLower(log)
	for _, a := range erased {
		if i := strings.Index(lowerDump, a); i >= 0 {
			t.Errorf("erased %s is still in Redis: …%s…", a, dump[max(0, i-200):min(len(dump), i+100)])
		}
		if strings.Contains(lowerLog, a) {
			t.Errorf("erased %s is in the worker's log", a)
		}
	}
}
