package worker

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// TestPaceHoldsBackWhatTheLimitsRefuse table-tests pace on a fake store:
// which recipients go now, which go back to the queue, when, and in which
// groups.
func TestPaceHoldsBackWhatTheLimitsRefuse(t *testing.T) {
	type grant struct {
		allowed int
		retry   time.Duration
	}
	tests := []struct {
		name      string
		rate      repermit.Rate
		addrs     []string
		penalties map[string]time.Duration
		grants    map[string]grant // scope -> the limiter's answer
		keep      []int64
		requeued  []queued
		limits    map[string]redisstore.RateLimit // scope -> the limit pace asked for
	}{
		{
			name:  "no limits: everyone goes",
			addrs: []string{"a@x.example", "b@y.example"},
			keep:  []int64{0, 1},
		},
		{
			name:      "a penalised domain waits out its penalty in one task",
			addrs:     []string{"a@gmail.com", "b@web.de", "c@gmail.com"},
			penalties: map[string]time.Duration{"gmail.com": 30 * time.Second},
			keep:      []int64{1},
			requeued:  []queued{{Indexes: []int64{0, 2}, Delay: 30 * time.Second}},
		},
		{
			name:   "a domain limit spreads the refused over bursts",
			rate:   repermit.Rate{PerDomainPerMinute: map[string]int{"default": 60}},
			addrs:  []string{"0@x.example", "1@x.example", "2@x.example", "3@x.example", "4@x.example", "5@x.example", "6@x.example", "7@x.example", "8@x.example"},
			grants: map[string]grant{"d:x.example": {allowed: 2}},
			keep:   []int64{0, 1},
			// Burst min(60/12, BatchSize) = 5 a group, one second apart per
			// recipient (60 a minute); redis_rate gave no RetryAfter, so the
			// first group waits one emission interval.
			requeued: []queued{{Indexes: []int64{2, 3, 4, 5, 6}, Delay: time.Second}, {Indexes: []int64{7, 8}, Delay: 6 * time.Second}},
			limits:   map[string]redisstore.RateLimit{"d:x.example": {Rate: 60, Period: time.Minute, Burst: 5}},
		},
		{
			name:     "the campaign rate refuses the rest after the domains",
			rate:     repermit.Rate{PerSecond: 8},
			addrs:    []string{"a@x.example", "b@x.example", "c@x.example"},
			grants:   map[string]grant{"campaign": {allowed: 1, retry: 400 * time.Millisecond}},
			keep:     []int64{0},
			requeued: []queued{{Indexes: []int64{1, 2}, Delay: 400 * time.Millisecond}},
			// A batch of a quarter second's worth: 8/4 = 2.
			limits: map[string]redisstore.RateLimit{"campaign": {Rate: 8, Period: time.Second, Burst: 2}},
		},
		{
			name:   "a domain with a limit of its own beside the default",
			rate:   repermit.Rate{PerDomainPerMinute: map[string]int{"gmail.com": 12}},
			addrs:  []string{"a@gmail.com", "b@gmail.com", "c@web.de"},
			grants: map[string]grant{"d:gmail.com": {allowed: 1, retry: 3 * time.Second}},
			keep:   []int64{0, 2},
			// Burst max(1, 12/12) = 1; five seconds per recipient.
			requeued: []queued{{Indexes: []int64{1}, Delay: 5 * time.Second}},
			limits:   map[string]redisstore.RateLimit{"d:gmail.com": {Rate: 12, Period: time.Minute, Burst: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asked := make(map[string]redisstore.RateLimit)
			st := &mockStore{
				DomainPenaltiesFn: func(_ context.Context, domains []string) ([]time.Duration, error) {
					out := make([]time.Duration, len(domains))
					for i, d := range domains {
						out[i] = tt.penalties[d]
					}
					return out, nil
				},
				AllowAtMostFn: func(_ context.Context, id, scope string, l redisstore.RateLimit, n int) (redisstore.Allowance, error) {
					asked[scope] = l
					g, ok := tt.grants[scope]
					if !ok {
						return redisstore.Allowance{Allowed: n}, nil
					}
					return redisstore.Allowance{Allowed: min(g.allowed, n), RetryAfter: g.retry}, nil
				},
			}
			s, q, counters := fakeServer(t, st, &fakeSender{})
			rs := recipients(tt.addrs...)
			keep, err := s.pace(context.Background(), fakeCampaign(t, tt.rate), sendPayload{Campaign: "camp", Step: 1}, rs)
			if err != nil {
				t.Fatal(err)
			}
			if got := indexes(keep); !reflect.DeepEqual(got, tt.keep) && len(got)+len(tt.keep) > 0 {
				t.Errorf("kept %v, want %v", got, tt.keep)
			}
			if got := q.sent(); !reflect.DeepEqual(got, tt.requeued) && len(got)+len(tt.requeued) > 0 {
				t.Errorf("requeued %+v, want %+v", got, tt.requeued)
			}
			held := 0
			for _, r := range tt.requeued {
				held += len(r.Indexes)
			}
			if got := counters.ThrottledN.Load(); got != int64(held) {
				t.Errorf("observer counted %d throttled, want %d", got, held)
			}
			for scope, want := range tt.limits {
				if asked[scope] != want {
					t.Errorf("limit asked for %s: %+v, want %+v", scope, asked[scope], want)
				}
			}
		})
	}
}

// TestPaceFailsWithoutLosingAnyone: a limiter that does not answer fails
// the task (asynq retries it, naming everyone), and nobody is re-queued
// on the side.
func TestPaceFailsWithoutLosingAnyone(t *testing.T) {
	down := errors.New("redis down")
	st := &mockStore{
		DomainPenaltiesFn: func(_ context.Context, domains []string) ([]time.Duration, error) {
			return make([]time.Duration, len(domains)), nil
		},
		AllowAtMostFn: func(context.Context, string, string, redisstore.RateLimit, int) (redisstore.Allowance, error) {
			return redisstore.Allowance{}, down
		},
	}
	s, q, _ := fakeServer(t, st, &fakeSender{})
	_, err := s.pace(context.Background(), fakeCampaign(t, repermit.Rate{PerSecond: 10}), sendPayload{Campaign: "camp", Step: 1}, recipients("a@x.example"))
	if !errors.Is(err, down) {
		t.Errorf("pace = %v, want the limiter's error", err)
	}
	if got := q.sent(); len(got) != 0 {
		t.Errorf("requeued %+v beside a failed task", got)
	}
}
