package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/smtpsink"
	"github.com/repermit/repermit/token"
)

// benchCampaign is the campaign both phases mail, as the campaign file of
// campaignFiles describes it.
func benchCampaign(id string, now time.Time) repermit.Campaign {
	return repermit.Campaign{
		ID:             id,
		From:           "Bench News <news@bench.example.com>",
		Subject:        "Do you still want Bench News?",
		ConfirmBaseURL: "https://consent.bench.example.com",
		StartAt:        now,
		Deadline:       now.Add(30 * 24 * time.Hour),
		Seq:            1,
	}
}

func buildMessages(signer *token.Signer, n int, shape Shape) ([]*gomail.Msg, error) {
	tpl, err := mailer.LoadTemplates("")
	if err != nil {
		return nil, err
	}
	c := benchCampaign("bench-send", time.Now())
	msgs := make([]*gomail.Msg, n)
	for i := range n {
		row := shape.Generate(i)
		r := &repermit.Recipient{Campaign: c.ID, Index: int64(i), Email: row.Email, Name: row.Name, Locale: row.Locale, Extra: row.Extra}
		claims := token.Claims{Campaign: c.ID, CampaignSeq: c.Seq, Recipient: uint32(i), Deadline: c.Deadline}
		confirm, unsub := signer.Links(c.ConfirmBaseURL, claims)
		m, err := tpl.Build(mailer.NewData(&c, r, confirm, unsub), mailer.Initial)
		if err != nil {
			return nil, fmt.Errorf("build message %d: %w", i, err)
		}
		msgs[i] = m
	}
	return msgs, nil
}

// baselineSend sends msgs to a fresh discarding sink over conns
// connections, each goroutine with its own go-mail client, and returns the
// time from the first dial to the sink's last accepted mail.
func baselineSend(ctx context.Context, msgs []*gomail.Msg, conns int, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sink, err := smtpsink.Start(ctx, smtpsink.Options{Discard: true})
	if err != nil {
		return 0, err
	}
	defer sink.Close()
	host, port, err := splitHostPort(sink.Addr())
	if err != nil {
		return 0, err
	}
	var next atomic.Int64
	errs := make([]error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conns {
		wg.Go(func() {
			// The same transport options as mailer.Pool: no TLS to the
			// local sink, no NOOP before and no RSET after each mail.
			c, err := gomail.NewClient(host, gomail.WithPort(port), gomail.WithTLSPolicy(gomail.NoTLS),
				gomail.WithoutNoop(), gomail.WithoutRset(), gomail.WithTimeout(mailer.DefaultTimeout))
			if err != nil {
				errs[w] = err
				return
			}
			if err := c.DialWithContext(ctx); err != nil {
				errs[w] = fmt.Errorf("baseline dial: %w", err)
				return
			}
			defer c.Close()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(msgs)) {
					return
				}
				if err := c.Send(msgs[i]); err != nil {
					errs[w] = fmt.Errorf("baseline send %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if got := sink.Count(); got != len(msgs) {
		return 0, fmt.Errorf("baseline: the sink accepted %d of %d mails", got, len(msgs))
	}
	return d, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}
