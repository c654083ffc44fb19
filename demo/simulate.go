package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
)

// mailSource hands the simulator the mails that arrived since its last
// call.
type mailSource interface {
	poll(ctx context.Context) ([]Links, error)
}

// sinkSource reads the in-process SMTP sink: the real messages, parsed as
// a mail client would.
type sinkSource struct {
	sink *smtpsink.Sink
	seen int
}

func (s *sinkSource) poll(context.Context) ([]Links, error) {
	msgs := s.sink.Messages()
	var out []Links
	for _, m := range msgs[s.seen:] {
		l, err := ParseLinks(m.Data)
		if err != nil {
			return out, fmt.Errorf("mail to %v: %w", m.To, err)
		}
		out = append(out, l)
	}
	s.seen = len(msgs)
	return out, nil
}

// tokenSource stands in for the mailbox when the mail goes to an external
// SMTP server the demo cannot read: it watches the recipients' mail steps in
// the store and signs the same links the worker put into each mail.
type tokenSource struct {
	store   *redisstore.Store
	signer  *token.Signer
	id      string
	baseURL string
	seen    map[int64]int
}

func (s *tokenSource) poll(ctx context.Context) ([]Links, error) {
	c, err := s.store.Campaign(ctx, s.id)
	if err != nil {
		return nil, err
	}
	n, err := s.store.Imported(ctx, s.id)
	if err != nil {
		return nil, err
	}
	var out []Links
	for b := int64(0); b < redisstore.Buckets(n); b++ {
		rs, err := s.store.Bucket(ctx, s.id, b)
		if err != nil {
			return out, err
		}
		for _, r := range rs {
			if r.State != repermit.StateSent || r.Step <= s.seen[r.Index] {
				continue
			}
			s.seen[r.Index] = r.Step
			claims := token.Claims{Campaign: c.ID, CampaignSeq: c.Seq, Recipient: uint32(r.Index), Deadline: c.Deadline}
			confirm, unsubscribe := s.signer.Links(s.baseURL, claims)
			out = append(out, Links{
				To:          r.Email,
				MessageID:   mailer.MessageID(c.ID, r.Index, mailer.Kind(r.Step-1), c.From),
				Confirm:     confirm,
				Yes:         confirm + "?answer=yes",
				No:          confirm + "?answer=no",
				Unsubscribe: unsubscribe,
				OneClick:    true,
			})
		}
	}
	return out, nil
}

// simulator plays the recipients of a Plan: it reads each mail as it
// arrives and, after a human pause, does what the recipient's behaviour
// says, through the web server like a browser or mail client.
type simulator struct {
	plan     *Plan
	src      mailSource
	browser  *Browser
	maxPause time.Duration

	mu  sync.Mutex
	rng *rand.Rand

	wg        sync.WaitGroup
	sem       chan struct{}
	mails     atomic.Int64
	reminders atomic.Int64
	requests  atomic.Int64
	failures  atomic.Int64
	late      atomic.Int64 // actions refused with 410 after the deadline
	firstErr  atomic.Pointer[error]
}

func newSimulator(plan *Plan, src mailSource, seed uint64, maxPause time.Duration) *simulator {
	return &simulator{
		plan: plan, src: src, browser: NewBrowser(), maxPause: maxPause,
		rng: rand.New(rand.NewPCG(seed, 7)),
		// Eight at a time: every answer appends to the one hash chain of
		// the campaign's ledger, and more would only contend for it.
		sem: make(chan struct{}, 8),
	}
}

// run polls for mail until ctx ends, then waits for the answers under way.
func (s *simulator) run(ctx context.Context) {
	defer s.wg.Wait()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		links, err := s.src.poll(ctx)
		if err != nil && ctx.Err() == nil {
			s.fail(err)
		}
		for _, l := range links {
			s.react(ctx, l)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *simulator) pause() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.rng.Int64N(int64(s.maxPause) + 1))
}

func (s *simulator) react(ctx context.Context, l Links) {
	s.mails.Add(1)
	reminder := l.Reminder()
	if reminder {
		s.reminders.Add(1)
	}
	b := s.plan.Behaviour[l.To]
	var steps []func(context.Context) error
	switch {
	case b == Scanned:
		steps = append(steps, func(ctx context.Context) error {
			for _, u := range []string{l.Confirm, l.Yes, l.No, l.Unsubscribe} {
				if err := s.expect(s.browser.Get(ctx, u)); err != nil {
					return err
				}
			}
			return nil
		})
	case reminder != (b == AfterReminder):
		// The initial mail of a reminder-answerer, or a reminder to someone
		// whose answer is still on its way: ignored.
	case b == ConfirmAll || b == AfterReminder:
		steps = append(steps, s.answer(l.Yes, "confirm", s.plan.Topics))
	case b == ConfirmSome:
		steps = append(steps, s.answer(l.Yes, "confirm", s.plan.Topics[len(l.To)%len(s.plan.Topics):][:1]))
	case b == Decline:
		steps = append(steps, s.answer(l.No, "decline", nil))
	case b == OneClick:
		steps = append(steps, s.unsubscribe(l.Unsubscribe))
	case b == ConfirmThenLeave:
		steps = append(steps, s.answer(l.Yes, "confirm", s.plan.Topics), s.unsubscribe(l.Unsubscribe))
	}
	if len(steps) == 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for _, step := range steps {
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.pause()):
			}
			err := s.try(ctx, step)
			var se *statusError
			if errors.As(err, &se) && se.code == http.StatusGone {
				// Answered after the deadline, as people do: the page
				// says the link is no longer valid.
				s.late.Add(1)
				return
			}
			if err != nil && ctx.Err() == nil {
				s.fail(fmt.Errorf("%s (%s): %w", l.To, b, err))
				return
			}
		}
	}()
}

// try runs one step, and again after a pause when the server asks for
// one (503, 429), as a person would press reload.
func (s *simulator) try(ctx context.Context, step func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		s.sem <- struct{}{}
		err := step(ctx)
		<-s.sem
		var se *statusError
		if attempt == 4 || !errors.As(err, &se) || (se.code != http.StatusServiceUnavailable && se.code != http.StatusTooManyRequests) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond << attempt):
		}
	}
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %.200s", e.code, e.body) }

func (s *simulator) answer(link, choice string, topics []string) func(context.Context) error {
	return func(ctx context.Context) error { return s.expect(s.browser.Answer(ctx, link, choice, topics)) }
}

func (s *simulator) unsubscribe(link string) func(context.Context) error {
	return func(ctx context.Context) error { return s.expect(s.browser.Unsubscribe(ctx, link)) }
}

func (s *simulator) expect(p Page, err error) error {
	s.requests.Add(1)
	if err != nil {
		return err
	}
	if p.Status != http.StatusOK {
		return &statusError{code: p.Status, body: strings.TrimSpace(p.Body)}
	}
	return nil
}

func (s *simulator) fail(err error) {
	s.failures.Add(1)
	s.firstErr.CompareAndSwap(nil, &err)
}

// err returns the first failure, if any, and how many there were.
func (s *simulator) err() (int64, error) {
	if p := s.firstErr.Load(); p != nil {
		return s.failures.Load(), *p
	}
	return 0, nil
}
