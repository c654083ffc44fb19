package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/token"
)

// claimChunk is how many recipients are claimed in one script call, just
// before they are mailed. The claims are renewed while the chunk is sent
// (keepClaims), so the lease need not cover the chunk's SMTP transactions.
const claimChunk = 8

// handleSend mails one step to the recipients of a send task: it reads
// them, holds back those the rate limits or a domain penalty do not allow
// yet, claims the rest in small chunks, skips the suppressed, and sends
// each over the pool, recording it as sent at once.
//
// Recipients that cannot be mailed now go back to the queue as a new task
// rather than failing this one, so that one slow recipient does not repeat
// a whole batch and pacing does not use up asynq's retries: throttled ones
// when the limiter allows, temporary failures after an exponential backoff,
// all of them every PauseRecheck while the campaign is paused.
func (s *Server) handleSend(ctx context.Context, t *asynq.Task) error {
	var p sendPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Step < 1 {
		return fmt.Errorf("send: bad payload %q: %w", t.Payload(), asynq.SkipRetry)
	}
	e, err := s.campaign(ctx, p.Campaign)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	if !s.cfg.Now().Before(e.c.Deadline) {
		// Claim refuses after the deadline anyway; asynq would otherwise
		// keep retrying a task whose purpose has passed.
		return nil
	}
	status, rs, err := s.store.ReadForSend(ctx, p.Campaign, p.Indexes)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	switch status {
	case repermit.StatusPaused:
		return s.requeue(ctx, p, p.Indexes, s.cfg.PauseRecheck)
	case repermit.StatusRunning:
	default:
		return nil // cancelled or finished: nobody is mailed any more
	}
	todo := rs[:0]
	for _, r := range rs {
		if r != nil && due(r, p.Step) {
			todo = append(todo, r)
		}
	}
	if todo, err = s.pace(ctx, e, p, todo); err != nil {
		return err
	}
	b := &sendBatch{s: s, e: e, p: p, domainFails: make(map[string]int), slowed: make(map[string]bool)}
	return b.run(ctx, todo)
}

// due reports whether r may still need mail step: the initial mail goes
// to pending recipients, a reminder to those mailed fewer times and
// unanswered. Claim decides for good; this only saves it the work.
func due(r *repermit.Recipient, step int) bool {
	if step == 1 {
		return r.State == repermit.StatePending
	}
	return r.State == repermit.StateSent && r.Step < step
}

// sendBatch is one send task's progress.
type sendBatch struct {
	s *Server
	e *campaignEntry
	p sendPayload

	retry       []int64 // temporary failures, for a later attempt
	busy        []int64 // leased by another worker
	deferred    []int64 // domain slowed down during this task
	domainFails map[string]int
	slowed      map[string]bool
	wire        bytes.Buffer // the mail being sent, reused by the next
}

func (b *sendBatch) run(ctx context.Context, todo []*repermit.Recipient) error {
	s, id, step := b.s, b.p.Campaign, b.p.Step
	lease := s.lease()
	for len(todo) > 0 {
		if s.stopped() || ctx.Err() != nil {
			// Shutdown: the rest waits for the next worker.
			b.deferred = append(b.deferred, indexes(todo)...)
			break
		}
		chunk := todo[:min(claimChunk, len(todo))]
		todo = todo[len(chunk):]
		errs, err := s.store.ClaimBatch(ctx, id, indexes(chunk), step, s.cfg.Now(), lease)
		if errors.Is(err, redisstore.ErrNotRunning) {
			// Paused, cancelled or at the deadline since the task began.
			return b.stop(ctx, slices.Concat(chunk, todo), nil)
		}
		if err != nil {
			// asynq retries the whole task, which names everyone.
			return fmt.Errorf("send %s: %w (%d recipients left to retry)", id, err, len(chunk)+len(todo))
		}
		claimed := chunk[:0:0]
		for i, r := range chunk {
			switch {
			case errs[i] == nil:
				claimed = append(claimed, r)
			case errors.Is(errs[i], redisstore.ErrBusy):
				b.busy = append(b.busy, r.Index)
			}
			// ErrNotAllowed: mailed already or answered meanwhile.
		}
		if stop, err := b.sendChunk(ctx, claimed, todo); stop || err != nil {
			return err
		}
	}
	return b.flush(ctx)
}

// sendChunk mails the claimed recipients of one chunk, renewing their
// claims meanwhile. It reports stop when the task ended early (err then
// says how it ended).
func (b *sendBatch) sendChunk(ctx context.Context, claimed, todo []*repermit.Recipient) (bool, error) {
	s, id := b.s, b.p.Campaign
	renewing := b.keepClaims(ctx, claimed)
	defer renewing()
	suppressed, err := s.store.IsSuppressed(ctx, hashes(claimed))
	if err != nil {
		b.release(ctx, claimed)
		return true, fmt.Errorf("send %s: %w", id, err)
	}
	for i, r := range claimed {
		if suppressed[i] {
			if err := s.store.Suppress(ctx, r, s.cfg.Now()); err != nil && !errors.Is(err, redisstore.ErrNotAllowed) {
				b.release(ctx, claimed[i:])
				return true, err
			}
			s.cfg.Observer.Suppressed(id)
			continue
		}
		if !s.cfg.Now().Before(b.e.c.Deadline) {
			// The links would already answer 410: no question after the
			// deadline, also not to the rest of a chunk claimed before it.
			b.release(ctx, claimed[i:])
			return true, b.stop(ctx, slices.Concat(claimed[i:], todo), nil)
		}
		if dom := domainOf(r.Email); b.slowed[dom] {
			b.release(ctx, []*repermit.Recipient{r})
			b.deferred = append(b.deferred, r.Index)
			continue
		}
		if stop, err := b.sendOne(ctx, r); stop {
			// r itself was released by sendOne.
			b.release(ctx, claimed[i+1:])
			return true, b.stop(ctx, slices.Concat(claimed[i:], todo), err)
		}
	}
	return false, nil
}

// keepClaims renews the claims on rs every quarter ClaimLease until the
// returned function is called. A renewal that fails is logged: the lease
// still holds for the rest of its time, and the next renewal may succeed.
func (b *sendBatch) keepClaims(ctx context.Context, rs []*repermit.Recipient) (stop func()) {
	if len(rs) == 0 {
		return func() {}
	}
	s, lease := b.s, b.s.lease()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	idxs := indexes(rs)
	go func() {
		defer close(done)
		t := time.NewTicker(lease / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := s.store.RenewBatch(ctx, b.p.Campaign, idxs, b.p.Step, s.cfg.Now(), lease); err != nil && ctx.Err() == nil {
				s.log.Warn("claims not renewed", "campaign", b.p.Campaign, "recipients", idxs, "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// lease is how long a claim holds without renewal.
func (s *Server) lease() time.Duration { return s.cfg.ClaimLease }

// sendOne mails one claimed recipient and records the outcome. It reports
// stop when the whole campaign must stop (the message itself was refused).
func (b *sendBatch) sendOne(ctx context.Context, r *repermit.Recipient) (stop bool, err error) {
	s, c, step := b.s, &b.e.c, b.p.Step
	msg, err := b.build(r)
	if err != nil {
		// A template that does not render for this recipient would fail
		// for the next one too: treat it like a refused message.
		s.log.Error("cannot build mail; pausing campaign", "campaign", c.ID, "recipient", r.Index, "err", err)
		b.release(ctx, []*repermit.Recipient{r})
		return true, b.pause(ctx, fmt.Sprintf("building the mail failed: %v", err))
	}
	if err := b.keepMailWording(ctx, r); err != nil {
		// Not sent: a mail whose wording is not kept could not be shown
		// in a proof later. asynq retries the task.
		b.release(ctx, []*repermit.Recipient{r})
		return true, err
	}
	began := time.Now()
	err = s.pool.SendWire(ctx, msg)
	s.cfg.Observer.SMTPDuration(time.Since(began))
	// From here until MarkSent below has been written, a crash (or a Redis
	// failure that outlasts markSent's retries) leaves a mail the server
	// accepted recorded only as claimed: when the lease runs out, a retry
	// mails this step again. It is the one at-least-once window left, one
	// round trip wide; nothing else runs in between.
	class := mailer.Classify(err)
	switch class {
	case mailer.OK:
		if err := b.markSent(ctx, r.Index); err != nil {
			s.log.Error("mail sent but not recorded; the recipient may get it again", "campaign", c.ID, "recipient", r.Index, "step", step, "err", err)
		}
		s.cfg.Observer.Sent(c.ID, step)
		return false, nil
	case mailer.RecipientRejected:
		s.cfg.Observer.Failed(c.ID, class)
		err := s.store.BounceFrom(ctx, r, s.cfg.Now(), "smtp")
		if err != nil && !errors.Is(err, redisstore.ErrNotAllowed) {
			s.log.Error("bounce not recorded", "campaign", c.ID, "recipient", r.Index, "err", err)
		}
		if err == nil {
			// Counted by source beside the DSN, ARF and webhook reports.
			_, _, err = s.store.RecordFeedback(ctx, redisstore.Feedback{
				Campaign: c.ID, Index: r.Index, Key: fmt.Sprintf("smtp:%d:%d", r.Index, step),
				Kind: redisstore.FeedbackHard, Source: "smtp", At: s.cfg.Now(),
			})
			if err != nil {
				s.log.Warn("bounce not counted by source", "campaign", c.ID, "recipient", r.Index, "err", err)
			}
		}
		return false, nil
	case mailer.MessageRejected:
		s.cfg.Observer.Failed(c.ID, class)
		b.release(ctx, []*repermit.Recipient{r})
		return true, b.pause(ctx, fmt.Sprintf("the SMTP server refused the message: %v", err))
	}
	// Temporary: a 4xx, a dropped connection, or our own shutdown.
	s.cfg.Observer.Failed(c.ID, class)
	if c.Waves != nil && ctx.Err() == nil {
		// Counted toward the recipient's wave's deferrals, once per attempt.
		_, _, ferr := s.store.RecordFeedback(ctx, redisstore.Feedback{
			Campaign: c.ID, Index: r.Index, Key: fmt.Sprintf("smtp-deferred:%d:%d:%d", r.Index, step, b.p.Attempt),
			Kind: redisstore.FeedbackDeferred, Source: "smtp", At: s.cfg.Now(),
		})
		if ferr != nil {
			s.log.Warn("deferral not counted toward its wave", "campaign", c.ID, "recipient", r.Index, "err", ferr)
		}
	}
	b.release(ctx, []*repermit.Recipient{r})
	dom := domainOf(r.Email)
	b.domainFails[dom]++
	if mailer.Throttled(err) || b.domainFails[dom] >= s.cfg.DomainTempFailures {
		if perr := s.store.PenalizeDomain(context.WithoutCancel(ctx), dom, s.cfg.DomainPenalty); perr != nil {
			s.log.Warn("domain penalty not recorded", "domain", dom, "err", perr)
		}
		if !b.slowed[dom] {
			s.log.Warn("slowing down mail to a domain", "domain", dom, "for", s.cfg.DomainPenalty, "err", err)
		}
		b.slowed[dom] = true
	}
	b.retry = append(b.retry, r.Index)
	return false, nil
}

func (b *sendBatch) build(r *repermit.Recipient) (*mailer.Wire, error) {
	c := &b.e.c
	signer := b.s.cfg.Signer
	claims := token.Claims{Campaign: c.ID, CampaignSeq: c.Seq, Recipient: uint32(r.Index), Deadline: c.Deadline}
	confirm, unsub := signer.Links(c.ConfirmBaseURL, claims)
	// VERP: a bounce to this address names the recipient by a signed
	// token, so it is matched without reading the bounce's text and a
	// forged one can bounce nobody.
	var returnPath string
	if domain := b.s.pool.BounceDomain(); domain != "" {
		returnPath = signer.BounceAddress(claims, domain)
	}
	return b.e.tpl.BuildWire(mailer.NewData(c, r, confirm, unsub), b.kind(), returnPath, &b.wire)
}

// kind is the mail of the task's step.
func (b *sendBatch) kind() mailer.Kind {
	if b.p.Step > 1 {
		return mailer.Reminder(b.p.Step - 1)
	}
	return mailer.Initial
}

// keepMailWording keeps the wording of the mail r is about to get (its
// template with placeholders, no personal data), before it is sent, once
// per process, campaign, step, locale and whether it names the recipient.
func (b *sendBatch) keepMailWording(ctx context.Context, r *repermit.Recipient) error {
	w := redisstore.MailWording{Step: b.kind().Step(), Locale: r.Locale, Named: r.Name != ""}
	key := w // SHA256 still empty: the key is step, locale and named, with no allocation per mail
	if _, ok := b.e.keptWordings.Load(key); ok {
		return nil
	}
	c := &b.e.c
	text, err := b.e.tpl.MailWording(mailer.NewData(c, r, c.ConfirmBaseURL, c.ConfirmBaseURL), b.kind())
	if err != nil {
		return fmt.Errorf("send %s: %w", c.ID, err)
	}
	sum := sha256.Sum256([]byte(text))
	w.SHA256 = hex.EncodeToString(sum[:])
	if err := b.s.store.KeepMailWording(ctx, c.ID, w, []byte(text)); err != nil {
		return fmt.Errorf("send %s: %w", c.ID, err)
	}
	b.e.keptWordings.Store(key, struct{}{})
	return nil
}

// markSent records an accepted mail, retrying a failing Redis for a while
// and even after the task's context ended: every moment the record is
// missing is a moment in which a crash would send the mail twice.
func (b *sendBatch) markSent(ctx context.Context, idx int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var err error
	for attempt := 0; ; attempt++ {
		err = b.s.store.MarkSent(ctx, b.p.Campaign, idx, b.p.Step, b.s.cfg.Now())
		if err == nil || errors.Is(err, redisstore.ErrNotAllowed) || repermit.ErrorCode(err) != repermit.EUNAVAILABLE {
			// ErrNotAllowed: the recipient expired or answered meanwhile.
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
}

// release gives up the leases of claimed recipients that were not mailed,
// so that their next task may claim them at once.
func (b *sendBatch) release(ctx context.Context, rs []*repermit.Recipient) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, r := range rs {
		if err := b.s.store.Release(ctx, b.p.Campaign, r.Index, b.p.Step, b.s.cfg.Now()); err != nil && !errors.Is(err, redisstore.ErrNotAllowed) {
			// The lease runs out by itself; the retry waits for that.
			b.s.log.Warn("release failed", "campaign", b.p.Campaign, "recipient", r.Index, "err", err)
		}
	}
}

// stop ends the task early because the campaign stopped sending (cause
// nil: paused, cancelled or at the deadline) or must stop (cause: the
// message was refused and the campaign paused). Whatever the task did not
// finish goes back to the queue unless the campaign is cancelled, finished
// or past its deadline: nobody is left behind a task that ended.
func (b *sendBatch) stop(ctx context.Context, rest []*repermit.Recipient, cause error) error {
	s := b.s
	b.deferred = append(b.deferred, indexes(rest)...)
	c, err := s.store.Campaign(ctx, b.p.Campaign)
	if repermit.ErrorCode(err) == repermit.ENOTFOUND {
		return nil
	}
	if err != nil {
		// asynq retries the whole task; claims skip whoever was mailed.
		return err
	}
	if c.Status == repermit.StatusCancelled || c.Status == repermit.StatusFinished || !s.cfg.Now().Before(c.Deadline) {
		b.retry, b.busy, b.deferred = nil, nil, nil
		if cause != nil {
			return fmt.Errorf("send %s: %w: %w", b.p.Campaign, cause, asynq.SkipRetry)
		}
		return nil
	}
	if cause != nil && c.Status != repermit.StatusPaused {
		// The pause could not be written (Redis failed), or the task ended
		// for a failure that pauses nothing (the mail's wording could not
		// be kept). asynq retries the whole task: claims skip whoever was
		// mailed; a refused message is tried once more and pauses the
		// campaign then.
		return fmt.Errorf("send %s: %w (the campaign is %s, not paused; the task is retried)", b.p.Campaign, cause, c.Status)
	}
	delay := time.Duration(0) // running again already: a resume came in between
	if c.Status == repermit.StatusPaused {
		delay = s.cfg.PauseRecheck
	}
	all := slices.Concat(b.retry, b.busy, b.deferred)
	b.retry, b.busy, b.deferred = nil, nil, nil
	if err := s.requeue(ctx, b.p, all, delay); err != nil {
		return fmt.Errorf("send %s: %w (%d recipients to retry)", b.p.Campaign, err, len(all))
	}
	if cause != nil {
		// Archived, not retried: asynqmon shows why the campaign paused.
		return fmt.Errorf("send %s: %w: %w", b.p.Campaign, cause, asynq.SkipRetry)
	}
	return nil
}

// pause stops the campaign after the SMTP server refused the message
// itself: every other recipient would get the same answer, and a human has
// to look (sender reputation, content, authentication) before it resumes.
func (b *sendBatch) pause(ctx context.Context, reason string) error {
	s := b.s
	err := s.store.SetStatus(ctx, b.p.Campaign, repermit.StatusPaused, repermit.StatusRunning)
	s.log.Error("CAMPAIGN PAUSED: fix the cause, then run `repermit resume "+b.p.Campaign+"`",
		"campaign", b.p.Campaign, "reason", reason, "set_status_err", err)
	return errors.New(reason)
}

// flush puts the recipients this task could not finish back in the queue.
// A recipient that keeps failing temporarily is tried again, at most
// RetryMax apart, until the deadline ends the campaign; if it never got the
// mail, the deadline keeps it as unreached. When a requeue fails, flush
// returns the error, so that asynq retries the whole task rather than
// leave anyone behind.
func (b *sendBatch) flush(ctx context.Context) error {
	s := b.s
	var errs []error
	if len(b.retry) > 0 {
		p := b.p
		p.Attempt++
		if p.Attempt == s.cfg.MaxAttempts {
			s.log.Warn("recipients keep failing temporarily; still retrying, at most RetryMax apart, until the deadline",
				"campaign", p.Campaign, "recipients", b.retry, "attempts", p.Attempt)
		}
		if err := s.requeue(ctx, p, b.retry, s.backoff(p.Attempt)); err != nil {
			errs = append(errs, fmt.Errorf("requeue after temporary failure: %w", err))
		}
	}
	if len(b.busy) > 0 {
		// Another worker holds these, or held them and crashed: look again
		// once its lease has run out.
		if err := s.requeue(ctx, b.p, b.busy, s.lease()); err != nil {
			errs = append(errs, fmt.Errorf("requeue busy recipients: %w", err))
		}
	}
	if len(b.deferred) > 0 {
		delay := s.cfg.DomainPenalty
		if s.stopped() {
			delay = 0
		}
		if err := s.requeue(ctx, b.p, b.deferred, delay); err != nil {
			errs = append(errs, fmt.Errorf("requeue deferred recipients: %w", err))
		}
	}
	b.retry, b.busy, b.deferred = nil, nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("send %s: %w", b.p.Campaign, err)
	}
	return nil
}

// requeue enqueues a fresh send task for idxs after delay.
func (s *Server) requeue(ctx context.Context, p sendPayload, idxs []int64, delay time.Duration) error {
	if len(idxs) == 0 {
		return nil
	}
	p.Indexes = append([]int64(nil), idxs...)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return s.sched.send(ctx, p, delay, "")
}

// backoff is the delay before attempt n (from 1) of a recipient: RetryBase
// doubled per attempt, capped at RetryMax, with up to 50% jitter so that a
// domain's retries do not all arrive at once.
func (s *Server) backoff(n int) time.Duration {
	return doubling(s.cfg.RetryBase, s.cfg.RetryMax, n)
}

// doubling is the n-th wait (from 1) of a backoff that starts at base and
// doubles up to most, plus up to 50% jitter.
func doubling(base, most time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < most; i++ {
		d *= 2
	}
	d = min(d, most)
	return d + time.Duration(rand.Int64N(int64(d)/2+1))
}

func indexes(rs []*repermit.Recipient) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.Index
	}
	return out
}

func hashes(rs []*repermit.Recipient) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = repermit.AddressHash(r.Email)
	}
	return out
}

func domainOf(email string) string {
	i := strings.LastIndexByte(email, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(email[i+1:])
}
