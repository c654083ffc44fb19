package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
)

// TestSentMailWordingsAreKept: a campaign that sent its initial mail and a
// reminder in two locales has noted four mail wordings, each kept under
// its SHA-256 with the subject the recipients got, in its locale, with
// placeholders for the name and links and no address, name or link of
// anyone in it.
func TestSentMailWordingsAreKept(t *testing.T) {
	const n = 6
	e := newEnv(t, smtpsink.Options{})
	ctx := context.Background()
	start := time.Now()
	c := repermit.Campaign{ID: "words", From: "ACME News <news@acme.example>", Subject: "Do you still want ACME News?",
		ConfirmBaseURL: "https://consent.acme.example", StartAt: start, Deadline: start.Add(time.Hour),
		Reminders: []time.Duration{2 * time.Second}}
	imp, err := e.store.BeginImport(ctx, c, start)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		loc := ""
		if i%2 == 1 {
			loc = "de"
		}
		if err := imp.Add(ctx, addr(i, nil), fmt.Sprintf("Person%d Surname%d", i, i), loc, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: c.ID, Imported: n}); err != nil {
		t.Fatal(err)
	}
	c = imp.Campaign()
	if err := e.sched.Schedule(ctx, c); err != nil {
		t.Fatal(err)
	}
	e.start(e.config())
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := e.sink.WaitFor(wctx, 2*n); err != nil {
		t.Fatal(err)
	}
	e.waitSendsDone(10 * time.Second)

	ws, err := e.store.MailWordings(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]redisstore.MailWording{}
	for _, w := range ws {
		got[fmt.Sprintf("%d/%s/%t", w.Step, w.Locale, w.Named)] = w
	}
	subjects := map[string]bool{} // subjects the recipients got
	for _, m := range e.sink.Messages() {
		subjects[m.Header.Get("Subject")] = true
	}
	for _, tc := range []struct {
		key, mail, locale string
	}{
		{"0//true", "initial", "en"},
		{"0/de/true", "initial", "de"},
		{"1//true", "reminder1", "en"},
		{"1/de/true", "reminder1", "de"},
	} {
		w, ok := got[tc.key]
		if !ok {
			t.Errorf("%s: no mail wording noted (have %v)", tc.key, ws)
			continue
		}
		text, ok, err := e.store.Wording(ctx, c.ID, w.SHA256)
		if err != nil || !ok {
			t.Fatalf("%s: wording %s not kept: %v", tc.key, w.SHA256, err)
		}
		sum := sha256.Sum256([]byte(text))
		if hex.EncodeToString(sum[:]) != w.SHA256 {
			t.Errorf("%s: kept text does not hash to %s", tc.key, w.SHA256)
		}
		head := fmt.Sprintf("repermit mail wording\ncampaign: words\nmail: %s\nlocale: %s\nsubject: ", tc.mail, tc.locale)
		if !strings.HasPrefix(text, head) {
			t.Errorf("%s: wording starts %q, want %q", tc.key, text[:min(len(text), 120)], head)
		}
		subject, _, _ := strings.Cut(strings.TrimPrefix(text, head), "\n")
		if !subjects[subject] {
			t.Errorf("%s: subject %q is none the recipients got (%v)", tc.key, subject, subjects)
		}
		for _, want := range []string{"{name}", "{yes link}", "{no link}", "{unsubscribe link}"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: wording lacks the placeholder %s:\n%s", tc.key, want, text)
			}
		}
		for _, personal := range []string{"@example.com", "Person", "Surname", "https://consent.acme.example/", "Zq7x"} {
			if strings.Contains(text, personal) {
				t.Errorf("%s: wording holds %q:\n%s", tc.key, personal, text)
			}
		}
	}
	if len(ws) != 4 {
		t.Errorf("%d mail wordings noted, want 4: %v", len(ws), ws)
	}
}
