package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redistest"
)

// TestOnlyAnsweredStatesHoldAnswers checks against the state tables what
// the recipient read relies on to leave the answer field out: an answer
// leads to a state mayHaveAnswer names, and no transition leads from such
// a state to one it does not.
func TestOnlyAnsweredStatesHoldAnswers(t *testing.T) {
	codeOf := func(stage string) string {
		st, _ := repermit.StageNamed(stage)
		c := string(st.Code)
		for _, code := range []string{c, c + "1", c + "2", c + "1:0", c + "2:0"} {
			if got, _, _, ok := repermit.ParseCode(code); ok && got.Name == stage {
				return code
			}
		}
		t.Fatalf("no code of stage %s", stage)
		return ""
	}
	for _, tr := range repermit.Transitions() {
		from := codeOf(tr.From)
		to := strings.NewReplacer("{step}", "1", "{lease}", "0").Replace(tr.To)
		name := fmt.Sprintf("%s --%s--> %s", tr.From, tr.On, to)
		if tr.On.Answer() && !mayHaveAnswer(to) {
			t.Errorf("%s: an answer leads to a state read without its answer", name)
		}
		if mayHaveAnswer(from) && !mayHaveAnswer(to) {
			t.Errorf("%s: leads from a state that may hold an answer to one read without it", name)
		}
	}
}

// fieldsHook records the fields of every HMGET sent.
type fieldsHook struct {
	mu    sync.Mutex
	reads [][]string
}

func (h *fieldsHook) record(c redis.Cmder) {
	if c.Name() != "hmget" {
		return
	}
	var f []string
	for _, a := range c.Args()[2:] {
		f = append(f, fmt.Sprint(a))
	}
	h.mu.Lock()
	h.reads = append(h.reads, f)
	h.mu.Unlock()
}

func (h *fieldsHook) take() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.reads
	h.reads = nil
	return r
}

func (h *fieldsHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *fieldsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.record(cmd)
		return next(ctx, cmd)
	}
}
func (h *fieldsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.record(c)
		}
		return next(ctx, cmds)
	}
}

// TestRecipientsReadBackTheirAnswers: a recipient reads back with its
// answer in every answered state and with rows short and long (f and g),
// and one who has not answered, with a short row, costs one HMGET of s, d
// and e.
func TestRecipientsReadBackTheirAnswers(t *testing.T) {
	r := redistest.New(t)
	hook := &fieldsHook{}
	r.Client.AddHook(hook)
	s := New(r.Client, r.Prefix)
	ctx := context.Background()
	c := repermit.Campaign{ID: "camp", From: "news@acme.example", Subject: "s", StartAt: t0(), Deadline: t0().Add(time.Hour), Topics: []string{"yoga", "events"}}
	imp, err := s.BeginImport(ctx, c, t0())
	if err != nil {
		t.Fatal(err)
	}
	// Names of 0, 100 and 200 bytes: rows in d and e, and rows that need
	// f and g.
	nameLens := []int{0, 100, 200}
	type answer struct {
		state  repermit.State
		topics []string
	}
	cases := []struct {
		name    string
		answers []answer
		want    repermit.State
		topics  []string
	}{
		{name: "unanswered", want: repermit.StatePending},
		{name: "confirmed", answers: []answer{{repermit.StateConfirmed, []string{"yoga"}}}, want: repermit.StateConfirmed, topics: []string{"yoga"}},
		{name: "topics changed", answers: []answer{{repermit.StateConfirmed, []string{"yoga"}}, {repermit.StateConfirmed, []string{"events"}}}, want: repermit.StateConfirmed, topics: []string{"events"}},
		{name: "declined", answers: []answer{{repermit.StateDeclined, nil}}, want: repermit.StateDeclined},
		{name: "withdrawn", answers: []answer{{repermit.StateConfirmed, []string{"yoga", "events"}}, {repermit.StateUnsubscribed, nil}}, want: repermit.StateUnsubscribed},
	}
	n := int64(0)
	for range cases {
		for _, l := range nameLens {
			if err := imp.Add(ctx, fmt.Sprintf("r%d@example.com", n), strings.Repeat("n", l), "de", nil); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "camp", Imported: n}); err != nil {
		t.Fatal(err)
	}
	at := t0().Add(time.Minute)
	idx := int64(0)
	for _, tc := range cases {
		for _, l := range nameLens {
			for k, a := range tc.answers {
				if _, err := s.Record(ctx, Answer{Campaign: "camp", Index: idx, State: a.state, Topics: a.topics, At: at.Add(time.Duration(k) * time.Second)}); err != nil {
					t.Fatalf("%s, name of %d bytes: answer %d: %v", tc.name, l, k, err)
				}
			}
			hook.take()
			got, err := s.Recipient(ctx, "camp", idx)
			if err != nil {
				t.Fatalf("%s, name of %d bytes: %v", tc.name, l, err)
			}
			var wantAt time.Time
			if len(tc.answers) > 0 {
				wantAt = at.Add(time.Duration(len(tc.answers)-1) * time.Second)
			}
			if got.State != tc.want || !got.AnsweredAt.Equal(wantAt) || !slices.Equal(got.Topics, tc.topics) {
				t.Errorf("%s, name of %d bytes: read %s answered %v topics %v, want %s %v %v", tc.name, l, got.State, got.AnsweredAt, got.Topics, tc.want, wantAt, tc.topics)
			}
			if got.State != repermit.StateDeclined && got.State != repermit.StateUnsubscribed &&
				(got.Email != fmt.Sprintf("r%d@example.com", idx) || got.Name != strings.Repeat("n", l) || got.Locale != "de") {
				t.Errorf("%s, name of %d bytes: read %q %q %q", tc.name, l, got.Email, got.Name, got.Locale)
			}
			reads := hook.take()
			if tc.want == repermit.StatePending && l == 0 {
				slot := fmt.Sprint(idx % BucketSize)
				if want := [][]string{{"s" + slot, "d" + slot, "e" + slot}}; !slices.EqualFunc(reads, want, slices.Equal) {
					t.Errorf("%s, name of %d bytes: HMGETs %v, want %v", tc.name, l, reads, want)
				}
			}
			idx++
		}
	}
}

// eraseBetweenReads runs erase once, right after the first HMGET of field
// (the first read of a recipient) has its reply: between the two reads of
// a row that needs two.
type eraseBetweenReads struct {
	field string
	erase func()
	mu    sync.Mutex
	done  bool
}

func (h *eraseBetweenReads) after(cmds ...redis.Cmder) {
	for _, c := range cmds {
		if c.Name() != "hmget" || len(c.Args()) < 3 || fmt.Sprint(c.Args()[2]) != h.field {
			continue
		}
		h.mu.Lock()
		run := !h.done
		h.done = true
		h.mu.Unlock()
		if run {
			h.erase()
		}
		return
	}
}

func (h *eraseBetweenReads) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *eraseBetweenReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after(cmd)
		return err
	}
}
func (h *eraseBetweenReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.after(cmds...)
		return err
	}
}

// TestReadsOfALongRowTornByAnErasure: a row of 128 packed bytes or more is
// read in two round trips (Recipient for the answer and f and g,
// ReadForSend for f and g). A recipient who declines in between is read
// as declined with their address erased, never as an address put
// together from the row before and the row after.
func TestReadsOfALongRowTornByAnErasure(t *testing.T) {
	r := redistest.New(t)
	ctx := context.Background()
	// The erasure comes from another process: a store of its own, on a
	// client without the hook.
	other, err := Open(ctx, r.URL, r.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hook := &eraseBetweenReads{}
	r.Client.AddHook(hook)
	s := New(r.Client, r.Prefix)
	c := repermit.Campaign{ID: "camp", From: "news@acme.example", Subject: "s", StartAt: t0(), Deadline: t0().Add(time.Hour), Topics: []string{"yoga"}}
	imp, err := s.BeginImport(ctx, c, t0())
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 200) // packs to more than 128 bytes
	for i := range 3 {
		if err := imp.Add(ctx, fmt.Sprintf("r%d@example.com", i), long, "de", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "camp", Imported: 3}); err != nil {
		t.Fatal(err)
	}
	decline := func(idx int64) func() {
		return func() {
			cur, err := other.Recipient(ctx, "camp", idx)
			if err != nil {
				t.Errorf("read %d to decline: %v", idx, err)
				return
			}
			res, err := other.Record(ctx, Answer{Campaign: "camp", Index: idx, State: repermit.StateDeclined, At: t0().Add(time.Minute), Current: cur})
			if err != nil || !res.Changed {
				t.Errorf("decline %d = %+v, %v", idx, res, err)
			}
		}
	}
	// Recipient 0 confirmed first, so that its read needs the answer too.
	if _, err := s.Record(ctx, Answer{Campaign: "camp", Index: 0, State: repermit.StateConfirmed, Topics: []string{"yoga"}, At: t0()}); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got *repermit.Recipient) {
		t.Helper()
		if got == nil {
			t.Fatalf("%s: no recipient", name)
		}
		if got.State != repermit.StateDeclined || got.Email != "" || got.Name != "" {
			t.Errorf("%s: read as %s, address %q, name of %d bytes; want declined and erased", name, got.State, got.Email, len(got.Name))
		}
	}
	for _, tc := range []struct {
		name string
		idx  int64
		read func() (*repermit.Recipient, error)
	}{
		{"Recipient, confirmed", 0, func() (*repermit.Recipient, error) { return s.Recipient(ctx, "camp", 0) }},
		{"Recipient, pending", 1, func() (*repermit.Recipient, error) { return s.Recipient(ctx, "camp", 1) }},
		{"ReadForSend", 2, func() (*repermit.Recipient, error) {
			_, rs, err := s.ReadForSend(ctx, "camp", []int64{2})
			if err != nil || len(rs) != 1 {
				return nil, err
			}
			return rs[0], nil
		}},
	} {
		hook.mu.Lock()
		hook.field, hook.erase, hook.done = fmt.Sprintf("s%d", tc.idx), decline(tc.idx), false
		hook.mu.Unlock()
		got, err := tc.read()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !hook.done {
			t.Fatalf("%s: the erasure did not run between the reads", tc.name)
		}
		check(tc.name, got)
	}
}
