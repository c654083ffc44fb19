package bounces

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/repermit/repermit"
)

// DefaultProcessedFolder is where processed reports go.
const DefaultProcessedFolder = "repermit-processed"

// DefaultBatch is the most messages one poll reads.
const DefaultBatch = 200

// MailboxConfig says how to reach the bounce mailbox.
type MailboxConfig struct {
	Host string
	// Port defaults to 993 for tls, 143 otherwise.
	Port int
	// TLS is "tls" (the default), "starttls" or "none" (loopback and tests).
	TLS      string
	Username string
	Password string
	// Mailbox is the folder polled, default INBOX.
	Mailbox string
	// Processed is the folder processed reports are moved to, created if
	// missing; default DefaultProcessedFolder.
	Processed string
	// Batch defaults to DefaultBatch.
	Batch int
	// Timeout bounds dialling and each command; default 30s.
	Timeout time.Duration
}

// ParseIMAPURL parses REPERMIT_BOUNCE_IMAP_URL:
// imap://user:pass@host:port/MAILBOX?tls=tls|starttls|none&processed=FOLDER&batch=N.
// Errors are EINVALID and never repeat the password.
func ParseIMAPURL(raw string) (MailboxConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return MailboxConfig{}, repermit.Errorf(repermit.EINVALID, "bounce IMAP URL: cannot parse; want imap://user:pass@host:port/MAILBOX?tls=tls|starttls|none")
	}
	if u.Scheme != "imap" {
		return MailboxConfig{}, repermit.Errorf(repermit.EINVALID, "bounce IMAP URL: scheme %q, want imap", u.Scheme)
	}
	c := MailboxConfig{Host: u.Hostname(), Mailbox: strings.TrimPrefix(u.Path, "/")}
	if c.Host == "" {
		return MailboxConfig{}, repermit.Errorf(repermit.EINVALID, "bounce IMAP URL: missing host")
	}
	if p := u.Port(); p != "" {
		if c.Port, err = strconv.Atoi(p); err != nil || c.Port < 1 || c.Port > 65535 {
			return MailboxConfig{}, repermit.Errorf(repermit.EINVALID, "bounce IMAP URL: bad port %q", p)
		}
	}
	if u.User == nil || u.User.Username() == "" {
		return MailboxConfig{}, repermit.Errorf(repermit.EINVALID, "bounce IMAP URL: missing user name")
	}
	c.Username = u.User.Username()
	c.Password, _ = u.User.Password()
	q := u.Query()
	c.TLS = strings.ToLower(q.Get("tls"))
	switch c.TLS {
	case "":
		c.TLS = "tls"
	case "tls", "starttls", "none":
	default:
		return MailboxConfig{}, repermit.Errorf(repermit.EINVALID, "bounce IMAP URL: tls=%q, want tls, starttls or none", c.TLS)
	}
	c.Processed = q.Get("processed")
	if v := q.Get("batch"); v != "" {
		if c.Batch, err = strconv.Atoi(v); err != nil || c.Batch < 1 {
			return MailboxConfig{}, repermit.Errorf(repermit.EINVALID, "bounce IMAP URL: batch=%q is not a positive number", v)
		}
	}
	if v := q.Get("timeout"); v != "" {
		if c.Timeout, err = time.ParseDuration(v); err != nil {
			return MailboxConfig{}, repermit.Errorf(repermit.EINVALID, "bounce IMAP URL: timeout=%q is not a duration", v)
		}
	}
	return c, nil
}

func (c MailboxConfig) addr() string {
	port := c.Port
	if port == 0 {
		port = 143
		if c.TLS == "tls" || c.TLS == "" {
			port = 993
		}
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(port))
}

func (c MailboxConfig) mailbox() string   { return cmp(c.Mailbox, "INBOX") }
func (c MailboxConfig) processed() string { return cmp(c.Processed, DefaultProcessedFolder) }
func (c MailboxConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 30 * time.Second
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Mailbox polls the bounce mailbox.
type Mailbox struct {
	Config    MailboxConfig
	Processor *Processor
	Logger    *slog.Logger

	// seen is, per UIDVALIDITY, the highest UID this process has read and
	// finished with: mail left alone stays in the box, and without the
	// cursor a backlog of more than Batch such messages would hide every
	// report behind it. A restart reads the box from the start again,
	// which repeats nothing (reports count once).
	mu   sync.Mutex
	seen map[uint32]imap.UID
}

// PollResult counts what one poll saw.
type PollResult struct {
	Read      int // messages read
	Processed int // matched reports, moved to the processed folder
	Changed   int // of those, reports that changed a recipient's state
	Left      int // left in the mailbox untouched
}

// Poll reads up to Batch messages of the mailbox, applies the reports that
// name a recipient by a token of ours and moves exactly those to the
// processed folder. Everything else stays where it was, unread flags
// included (BODY.PEEK). A report is applied once however often it is
// read: if the move fails or the process dies before it, the next poll
// reads the report again, changes nothing and moves it.
func (m *Mailbox) Poll(ctx context.Context) (PollResult, error) {
	var res PollResult
	c, err := m.dial(ctx)
	if err != nil {
		return res, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	sel, err := c.Select(m.Config.mailbox(), &imap.SelectOptions{}).Wait()
	if err != nil {
		return res, fmt.Errorf("bounce mailbox: select %s: %w", m.Config.mailbox(), err)
	}
	m.mu.Lock()
	after := m.seen[sel.UIDValidity]
	m.mu.Unlock()
	found, err := c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: after + 1, Stop: 0}}}}, nil).Wait()
	if err != nil {
		return res, fmt.Errorf("bounce mailbox: search: %w", err)
	}
	var uids []imap.UID
	for _, u := range found.AllUIDs() {
		// "N:*" also matches the last message when N is past it.
		if u > after {
			uids = append(uids, u)
		}
	}
	slices.Sort(uids)
	batch := m.Config.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	if len(uids) > batch {
		uids = uids[:batch]
	}
	if len(uids) == 0 {
		return res, c.Logout().Wait()
	}
	body := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	if err != nil {
		return res, fmt.Errorf("bounce mailbox: fetch: %w", err)
	}
	slices.SortFunc(msgs, func(a, b *imapclient.FetchMessageBuffer) int { return cmpUID(a.UID, b.UID) })
	var done imap.UIDSet
	var procErr error
	finished := after
	for _, msg := range msgs {
		res.Read++
		raw := msg.FindBodySection(body)
		out, err := m.Processor.Process(ctx, raw)
		if err != nil {
			// Redis is down or slow: this and later messages wait for the
			// next poll; those done so far are still moved.
			procErr = err
			break
		}
		finished = msg.UID
		if !out.Matched {
			res.Left++
			m.log().Debug("bounce mailbox: left alone", "uid", msg.UID, "kind", out.Kind.String())
			continue
		}
		res.Processed++
		if out.Changed != "" {
			res.Changed++
		}
		m.log().Info("bounce mailbox: report", "uid", msg.UID, "kind", out.Kind.String(), "status", out.Status,
			"campaign", out.Campaign, "recipient", out.Recipient, "changed", string(out.Changed), "first", out.First)
		done.AddNum(msg.UID)
	}
	res.Left += len(uids) - res.Read
	if len(done) > 0 {
		if err := m.ensureFolder(c); err != nil {
			return res, errors.Join(procErr, err)
		}
		if _, err := c.Move(done, m.Config.processed()).Wait(); err != nil {
			return res, errors.Join(procErr, fmt.Errorf("bounce mailbox: move to %s: %w", m.Config.processed(), err))
		}
	}
	// Only now, with the reports moved: a failed move must read them again.
	m.mu.Lock()
	if m.seen == nil {
		m.seen = make(map[uint32]imap.UID)
	}
	m.seen[sel.UIDValidity] = max(m.seen[sel.UIDValidity], finished)
	m.mu.Unlock()
	if procErr != nil {
		return res, procErr
	}
	return res, c.Logout().Wait()
}

func cmpUID(a, b imap.UID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (m *Mailbox) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

func (m *Mailbox) ensureFolder(c *imapclient.Client) error {
	list, err := c.List("", m.Config.processed(), nil).Collect()
	if err != nil {
		return fmt.Errorf("bounce mailbox: list: %w", err)
	}
	if len(list) > 0 {
		return nil
	}
	if err := c.Create(m.Config.processed(), nil).Wait(); err != nil {
		return fmt.Errorf("bounce mailbox: create %s: %w", m.Config.processed(), err)
	}
	return nil
}

func (m *Mailbox) dial(ctx context.Context) (*imapclient.Client, error) {
	cfg := m.Config
	d := net.Dialer{Timeout: cfg.timeout()}
	conn, err := d.DialContext(ctx, "tcp", cfg.addr())
	if err != nil {
		return nil, fmt.Errorf("bounce mailbox: dial %s: %w", cfg.addr(), err)
	}
	conn.SetDeadline(time.Now().Add(cfg.timeout() + time.Minute))
	opts := &imapclient.Options{TLSConfig: &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}}
	var c *imapclient.Client
	switch cfg.TLS {
	case "none":
		c = imapclient.New(conn, opts)
	case "starttls":
		if c, err = imapclient.NewStartTLS(conn, opts); err != nil {
			conn.Close()
			return nil, fmt.Errorf("bounce mailbox: STARTTLS with %s: %w", cfg.addr(), err)
		}
	default:
		c = imapclient.New(tls.Client(conn, opts.TLSConfig), opts)
	}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("bounce mailbox: greeting of %s: %w", cfg.addr(), err)
	}
	if err := c.Login(cfg.Username, cfg.Password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("bounce mailbox: login to %s as %s: %w", cfg.addr(), cfg.Username, err)
	}
	return c, nil
}
