package worker

import (
	"context"
	"errors"
	"net/textproto"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	gomail "github.com/wneessen/go-mail"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// TestStopRequeuesUnlessTheCampaignEnded table-tests what a send task that
// ends early hands back to the queue: everyone it did not finish, unless
// the campaign is over, and never when the pause it needed could not be
// written (asynq then retries the whole task).
func TestStopRequeuesUnlessTheCampaignEnded(t *testing.T) {
	refused := errors.New("the SMTP server refused the message")
	tests := []struct {
		name     string
		status   repermit.CampaignStatus
		deadline time.Duration // after the fake clock's now
		readErr  error
		cause    error
		requeued []queued
		wantErr  bool
		skip     bool // the error archives the task instead of retrying it
	}{
		{name: "paused: all back after the pause recheck", status: repermit.StatusPaused, deadline: time.Hour,
			requeued: []queued{{Indexes: []int64{5, 6, 1, 2, 3}, Delay: 2 * time.Second}}},
		{name: "resumed meanwhile: all back at once", status: repermit.StatusRunning, deadline: time.Hour,
			requeued: []queued{{Indexes: []int64{5, 6, 1, 2, 3}}}},
		{name: "cancelled: nobody", status: repermit.StatusCancelled, deadline: time.Hour},
		{name: "finished: nobody", status: repermit.StatusFinished, deadline: time.Hour},
		{name: "past the deadline: nobody", status: repermit.StatusPaused},
		{name: "refused and paused: all back, the task archived", status: repermit.StatusPaused, deadline: time.Hour, cause: refused,
			requeued: []queued{{Indexes: []int64{5, 6, 1, 2, 3}, Delay: 2 * time.Second}}, wantErr: true, skip: true},
		{name: "refused, the pause not written: the task retried whole", status: repermit.StatusRunning, deadline: time.Hour, cause: refused,
			wantErr: true},
		{name: "refused after cancel: archived, nobody back", status: repermit.StatusCancelled, deadline: time.Hour, cause: refused,
			wantErr: true, skip: true},
		{name: "campaign unreadable: the task retried whole", readErr: errors.New("redis down"), wantErr: true},
		{name: "campaign deleted: nothing", readErr: repermit.Errorf(repermit.ENOTFOUND, "no campaign")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &mockStore{CampaignFn: func(context.Context, string) (*repermit.Campaign, error) {
				if tt.readErr != nil {
					return nil, tt.readErr
				}
				return &repermit.Campaign{ID: "camp", Status: tt.status, Deadline: fakeT0.Add(tt.deadline)}, nil
			}}
			s, q, _ := fakeServer(t, st, &fakeSender{})
			b := &sendBatch{s: s, e: fakeCampaign(t, repermit.Rate{}), p: sendPayload{Campaign: "camp", Step: 1},
				retry: []int64{5}, busy: []int64{6}, deferred: []int64{1}}
			err := b.stop(context.Background(), recipients("a@x.example", "b@x.example", "c@x.example", "d@x.example")[2:], tt.cause)
			if (err != nil) != tt.wantErr || errors.Is(err, asynq.SkipRetry) != tt.skip {
				t.Errorf("stop = %v, want error %v (archived %v)", err, tt.wantErr, tt.skip)
			}
			if got := q.sent(); !reflect.DeepEqual(got, tt.requeued) && len(got)+len(tt.requeued) > 0 {
				t.Errorf("requeued %+v, want %+v", got, tt.requeued)
			}
		})
	}
}

// TestFlushRequeuesEachKindAfterItsOwnDelay: temporary failures after the
// backoff of their next attempt, recipients another worker holds after its
// lease, those of a domain slowed down meanwhile after the penalty (at once
// when the worker is stopping).
func TestFlushRequeuesEachKindAfterItsOwnDelay(t *testing.T) {
	tests := []struct {
		name     string
		attempt  int
		stopping bool
		want     []queued // Delay of a retry: the backoff's lower bound
	}{
		{name: "first failure", want: []queued{
			{Indexes: []int64{1}, Attempt: 1, Delay: 30 * time.Second},
			{Indexes: []int64{2}, Delay: 20 * time.Second},
			{Indexes: []int64{3}, Delay: time.Minute},
		}},
		{name: "third failure doubles twice", attempt: 2, want: []queued{
			{Indexes: []int64{1}, Attempt: 3, Delay: 2 * time.Minute},
			{Indexes: []int64{2}, Attempt: 2, Delay: 20 * time.Second},
			{Indexes: []int64{3}, Attempt: 2, Delay: time.Minute},
		}},
		{name: "the backoff stops at RetryMax, retries go on", attempt: 20, want: []queued{
			{Indexes: []int64{1}, Attempt: 21, Delay: time.Hour},
			{Indexes: []int64{2}, Attempt: 20, Delay: 20 * time.Second},
			{Indexes: []int64{3}, Attempt: 20, Delay: time.Minute},
		}},
		{name: "stopping: the slowed go back at once", stopping: true, want: []queued{
			{Indexes: []int64{1}, Attempt: 1, Delay: 30 * time.Second},
			{Indexes: []int64{2}, Delay: 20 * time.Second},
			{Indexes: []int64{3}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, q, _ := fakeServer(t, &mockStore{}, &fakeSender{})
			if tt.stopping {
				close(s.stopping)
			}
			b := &sendBatch{s: s, e: fakeCampaign(t, repermit.Rate{}), p: sendPayload{Campaign: "camp", Step: 1, Attempt: tt.attempt},
				retry: []int64{1}, busy: []int64{2}, deferred: []int64{3}}
			if err := b.flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := q.sent()
			if len(got) != len(tt.want) {
				t.Fatalf("requeued %+v, want %+v", got, tt.want)
			}
			for i, w := range tt.want {
				g := got[i]
				// The backoff adds up to half again as jitter.
				okDelay := g.Delay == w.Delay || i == 0 && g.Delay >= w.Delay && g.Delay <= w.Delay*3/2
				if !slices.Equal(g.Indexes, w.Indexes) || g.Attempt != w.Attempt || !okDelay {
					t.Errorf("task %d: %+v, want %+v", i, g, w)
				}
			}
		})
	}
	t.Run("a failed enqueue fails the task", func(t *testing.T) {
		s, q, _ := fakeServer(t, &mockStore{}, &fakeSender{})
		q.err = errors.New("redis down")
		b := &sendBatch{s: s, e: fakeCampaign(t, repermit.Rate{}), p: sendPayload{Campaign: "camp", Step: 1}, busy: []int64{2}}
		if err := b.flush(context.Background()); !errors.Is(err, q.err) {
			t.Errorf("flush = %v, want the enqueue's error", err)
		}
	})
}

// TestSendBatchRecordsEachOutcome runs a send batch on fakes: an accepted
// mail is marked sent, a refused recipient bounced, a temporary failure
// re-queued with its next attempt, a suppressed address never mailed, a
// recipient another worker holds looked at again after the lease, one
// answered meanwhile left alone.
func TestSendBatchRecordsEachOutcome(t *testing.T) {
	addrs := []string{"ok@x.example", "gone@x.example", "later@x.example", "blocked@x.example", "held@x.example", "answered@x.example"}
	rs := recipients(addrs...)
	var marked, bounced, suppressed, released []int64
	st := &mockStore{
		ClaimBatchFn: func(_ context.Context, _ string, idxs []int64, _ int, _ time.Time, _ time.Duration) ([]error, error) {
			out := make([]error, len(idxs))
			for i, idx := range idxs {
				switch addrs[idx] {
				case "held@x.example":
					out[i] = redisstore.ErrBusy
				case "answered@x.example":
					out[i] = redisstore.ErrNotAllowed
				}
			}
			return out, nil
		},
		RenewBatchFn: func(context.Context, string, []int64, int, time.Time, time.Duration) ([]error, error) {
			return nil, nil
		},
		IsSuppressedFn: func(_ context.Context, hs []string) ([]bool, error) {
			out := make([]bool, len(hs))
			for i, h := range hs {
				out[i] = h == repermit.AddressHash("blocked@x.example")
			}
			return out, nil
		},
		SuppressFn: func(_ context.Context, r *repermit.Recipient, _ time.Time) error {
			suppressed = append(suppressed, r.Index)
			return nil
		},
		MarkSentFn: func(_ context.Context, _ string, idx int64, _ int, _ time.Time) error {
			marked = append(marked, idx)
			return nil
		},
		BounceFn: func(_ context.Context, r *repermit.Recipient, _ time.Time) error {
			bounced = append(bounced, r.Index)
			return nil
		},
		RecordFeedbackFn: func(context.Context, redisstore.Feedback) (bool, int64, error) { return true, 0, nil },
		ReleaseFn: func(_ context.Context, _ string, idx int64, _ int, _ time.Time) error {
			released = append(released, idx)
			return nil
		},
	}
	pool := &fakeSender{answers: map[string]error{
		"gone@x.example":  &gomail.SendError{Reason: gomail.ErrGetRcpts},
		"later@x.example": &textproto.Error{Code: 451, Msg: "4.3.0 try again later"},
	}}
	s, q, counters := fakeServer(t, st, pool)
	b := &sendBatch{s: s, e: fakeCampaign(t, repermit.Rate{}), p: sendPayload{Campaign: "camp", Step: 1},
		domainFails: make(map[string]int), slowed: make(map[string]bool)}
	start := time.Now()
	if err := b.run(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a batch on fakes took %v", d)
	}
	for _, c := range []struct {
		what      string
		got, want []int64
	}{
		{"marked sent", marked, []int64{0}},
		{"bounced", bounced, []int64{1}},
		{"suppressed", suppressed, []int64{3}},
		{"released (the temporary failure)", released, []int64{2}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if want := []string{"ok@x.example", "gone@x.example", "later@x.example"}; !slices.Equal(pool.mailed, want) {
		t.Errorf("mailed %v, want %v", pool.mailed, want)
	}
	got := q.sent()
	if len(got) != 2 || !slices.Equal(got[0].Indexes, []int64{2}) || got[0].Attempt != 1 ||
		!slices.Equal(got[1].Indexes, []int64{4}) || got[1].Delay != s.cfg.ClaimLease {
		t.Errorf("requeued %+v, want [2] at attempt 1, then [4] after the lease", got)
	}
	if counters.SentN.Load() != 1 || counters.RecipientRejectedN.Load() != 1 || counters.TemporaryN.Load() != 1 || counters.SuppressedN.Load() != 1 {
		t.Errorf("observer: sent %d, rejected %d, temporary %d, suppressed %d; want 1 each",
			counters.SentN.Load(), counters.RecipientRejectedN.Load(), counters.TemporaryN.Load(), counters.SuppressedN.Load())
	}
}

// TestExpiryTaskIDs: the launch's expiry, one that came early and waits
// for the deadline, and one the sweep re-arms each have their own TaskID
// scheme, so that repeats of one collide and distinct ones do not.
func TestExpiryTaskIDs(t *testing.T) {
	s, q, _ := fakeServer(t, &mockStore{}, &fakeSender{})
	ctx := context.Background()
	deadline := fakeT0.Add(time.Hour)
	if err := s.sched.expire(ctx, "camp", 0, deadline, 25*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.sched.expire(ctx, "camp", deadline.UnixMilli(), deadline, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.sched.expire(ctx, "camp", 1234, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	want := []queued{
		{TaskID: "expire:camp", At: deadline, Keep: 25 * time.Hour},
		{TaskID: "expire:camp:" + strconv.FormatInt(deadline.UnixMilli(), 10), At: deadline},
		{TaskID: "expire:camp:1234"},
	}
	if got := q.sent(); !reflect.DeepEqual(got, want) {
		t.Errorf("enqueued %+v, want %+v", got, want)
	}
}
