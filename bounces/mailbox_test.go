package bounces_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/bounces"
	"github.com/repermit/repermit/redisstore"
)

// startIMAP serves an IMAP mailbox (go-imap's in-memory server, spoken to
// over TCP) with an empty INBOX and returns how to reach it and the user,
// to put mail into.
func startIMAP(t *testing.T) (bounces.MailboxConfig, *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("bounces", "imap-password")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return bounces.MailboxConfig{
		Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TLS: "none",
		Username: "bounces", Password: "imap-password",
	}, user
}

// folder returns the Message-IDs in a folder of the mailbox, sorted.
func folder(t *testing.T, cfg bounces.MailboxConfig, name string) []string {
	t.Helper()
	c, err := imapclient.DialInsecure(net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(cfg.Username, cfg.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.Envelope.MessageID)
	}
	slices.Sort(ids)
	return ids
}

// firstMessageID matches a report's own Message-Id, the first in it.
var firstMessageID = regexp.MustCompile(`(?im)^Message-Id: <[^>]*>`)

// withID gives a fixture a Message-Id of its own, so that two reports of
// the same kind are distinct messages and each can be found in a folder.
func withID(raw []byte, id string) []byte {
	loc := firstMessageID.FindIndex(raw)
	return slices.Concat(raw[:loc[0]], []byte("Message-Id: <"+id+">"), raw[loc[1]:])
}

// storeGoneAt is the store of a worker whose Redis goes away: its n-th
// RecordFeedback fails, and so does every call after it.
type storeGoneAt struct {
	bounces.Store
	n, calls int
}

func (s *storeGoneAt) RecordFeedback(ctx context.Context, f redisstore.Feedback) (bool, int64, error) {
	if s.calls++; s.calls >= s.n {
		return false, 0, repermit.Errorf(repermit.EUNAVAILABLE, "redis went away")
	}
	return s.Store.RecordFeedback(ctx, f)
}

// TestPollAfterACrashAppliesEachReportOnce fills a bounce mailbox with six
// reports and two other mails and polls it as workers would after
// crashes: one applied the first four reports and died before its MOVE,
// the next lost Redis mid-batch after a hard bounce had changed its
// recipient's state but before the report was recorded, and a fresh one
// reads the box from the start. Every report counts exactly once (the
// third soft bounce bounces its recipient; a report read again counts
// nothing), every report ends in the processed folder and the two other
// mails stay in the INBOX.
func TestPollAfterACrashAppliesEachReportOnce(t *testing.T) {
	e := newEnv(t, 6)
	ctx := context.Background()
	cfg, user := startIMAP(t)
	quiet := slog.New(slog.DiscardHandler)
	// A delay report about each of recipient 1's three mails.
	delayed := func(n string) []byte {
		kind := map[string]string{"1": "initial", "2": "reminder1", "3": "reminder2"}[n]
		return withID(fixture(t, "delayed-dsn.eml", "{{VERP}}", e.verp(1), "{{ORIGID}}", "<repermit.news.1."+kind+"@acme.example>"), "soft-"+n+"@relay.example")
	}
	box := []struct {
		id  string
		raw []byte
	}{
		{"hard-0@relay.example", withID(fixture(t, "postfix-dsn.eml", "{{VERP}}", e.verp(0)), "hard-0@relay.example")},
		{"soft-1@relay.example", delayed("1")},
		{"soft-2@relay.example", delayed("2")},
		{"arf-1@isp.example", fixture(t, "arf.eml", "{{UNSUB}}", e.unsub(2))},
		{"vacation-1@example.org", fixture(t, "vacation.eml", "{{VERP}}", e.verp(3))},
		{"hard-4@relay.example", withID(fixture(t, "postfix-dsn.eml", "{{VERP}}", e.verp(4)), "hard-4@relay.example")},
		{"unrelated-1@elsewhere.example", fixture(t, "unrelated.eml", "{{VERP}}", e.verp(5))},
		{"soft-3@relay.example", delayed("3")},
	}
	for _, m := range box {
		if !bytes.Contains(m.raw, []byte("<"+m.id+">")) {
			t.Fatalf("fixture for %s lacks its Message-Id", m.id)
		}
		if _, err := user.Append("INBOX", bytes.NewReader(m.raw), &imap.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The first worker applied the first four and died before its MOVE.
	for _, m := range box[:4] {
		if out, err := e.p.Process(ctx, m.raw); err != nil || !out.Matched || !out.First {
			t.Fatalf("%s: %+v, %v", m.id, out, err)
		}
	}

	// The second reads them again (recorded already: calls 1-4), leaves the
	// vacation reply, bounces recipient 4 and loses Redis at call 5, the
	// hard bounce's record.
	gone := &storeGoneAt{Store: e.store, n: 5}
	second := &bounces.Mailbox{Config: cfg, Logger: quiet, Processor: &bounces.Processor{Store: gone, Signer: e.signer, Now: e.p.Now}}
	res, err := second.Poll(ctx)
	if repermit.ErrorCode(err) != repermit.EUNAVAILABLE {
		t.Fatalf("poll with Redis gone: %+v, %v; want EUNAVAILABLE", res, err)
	}
	if res.Processed != 4 || res.Changed != 0 {
		t.Errorf("poll with Redis gone: %+v, want the 4 reports applied before moved and none changing anything", res)
	}
	if got, want := folder(t, cfg, "INBOX"), []string{"hard-4@relay.example", "soft-3@relay.example", "unrelated-1@elsewhere.example", "vacation-1@example.org"}; !slices.Equal(got, want) {
		t.Errorf("INBOX after the failed poll holds %v, want %v", got, want)
	}

	// A fresh worker: no cursor, reads the box from the start, twice.
	third := &bounces.Mailbox{Config: cfg, Logger: quiet, Processor: e.p}
	for i, want := range []bounces.PollResult{
		{Read: 4, Processed: 2, Changed: 1, Left: 2}, // recipient 4 bounced already; the third soft bounce bounces 1
		{Read: 0},
	} {
		res, err := third.Poll(ctx)
		if err != nil || res != want {
			t.Errorf("poll %d: %+v, %v; want %+v", i+1, res, err, want)
		}
	}
	if res, err := (&bounces.Mailbox{Config: cfg, Logger: quiet, Processor: e.p}).Poll(ctx); err != nil || res != (bounces.PollResult{Read: 2, Left: 2}) {
		t.Errorf("a restarted worker's poll: %+v, %v; want the two mails read and left", res, err)
	}

	if got, want := folder(t, cfg, "INBOX"), []string{"unrelated-1@elsewhere.example", "vacation-1@example.org"}; !slices.Equal(got, want) {
		t.Errorf("INBOX holds %v, want %v", got, want)
	}
	wantDone := []string{"arf-1@isp.example", "hard-0@relay.example", "hard-4@relay.example", "soft-1@relay.example", "soft-2@relay.example", "soft-3@relay.example"}
	if got := folder(t, cfg, bounces.DefaultProcessedFolder); !slices.Equal(got, wantDone) {
		t.Errorf("%s holds %v, want %v", bounces.DefaultProcessedFolder, got, wantDone)
	}
	want := map[int]repermit.State{0: repermit.StateBounced, 1: repermit.StateBounced, 2: repermit.StateUnsubscribed,
		3: repermit.StateSent, 4: repermit.StateBounced, 5: repermit.StateSent}
	for idx, st := range want {
		if got := e.state(t, idx); got != st {
			t.Errorf("recipient %d is %s, want %s", idx, got, st)
		}
	}
	stats, err := e.store.Stats(ctx, e.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantFB := map[string]int64{"bounced:dsn": 2, "soft:dsn": 3, "complaint:arf": 1}
	for k, v := range wantFB {
		if stats.Feedback[k] != v {
			t.Errorf("feedback %s = %d, want %d (all: %v)", k, stats.Feedback[k], v, stats.Feedback)
		}
	}
}
