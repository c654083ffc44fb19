// Package launch turns a campaign file and its CSV into a running campaign:
// it validates everything first, then imports and schedules in one step
// that either completes or leaves nothing behind.
package launch

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/config"
	"github.com/repermit/repermit/locale"
	"github.com/repermit/repermit/recipients"
	"github.com/repermit/repermit/redisstore"
)

// Store is what Launch needs of the system of record: whether the id is
// taken, and an import that stays invisible until it commits.
// *redisstore.Store implements it; the import it begins is redisstore's own
// (batched writes and suppression lookups), which only Redis can check.
type Store interface {
	Campaign(ctx context.Context, id string) (*repermit.Campaign, error)
	BeginImport(ctx context.Context, c repermit.Campaign, now time.Time) (*redisstore.Import, error)
}

var _ Store = (*redisstore.Store)(nil)

// Scheduler arms a launched campaign's timed work (feeding, reminders,
// deadline). The worker package implements it on asynq.
type Scheduler interface {
	Schedule(ctx context.Context, c repermit.Campaign) error
}

// TemplateChecker refuses campaign templates that cannot be sent, such as
// a text part without the confirm link or a page override that does not
// render: it renders the mails and pages of campaign c once in each locale
// its recipients read. The mailer and web packages implement it.
type TemplateChecker func(c *repermit.Campaign, locales []string) error

// Report is the outcome of validating or importing a recipients file.
type Report struct {
	repermit.ImportResult
	// Warnings name the rows that were skipped, "file:line: reason", at most
	// MaxWarnings of them; Omitted counts the rest.
	Warnings []string
	Omitted  int
	// Locales counts the recipients (not skipped) by the language their
	// mail is written in.
	Locales map[string]int64
}

// MaxWarnings bounds the warnings kept in a Report, so a million bad rows
// cost no memory.
const MaxWarnings = 1000

func (r *Report) warn(format string, args ...any) {
	if len(r.Warnings) >= MaxWarnings {
		r.Omitted++
		return
	}
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// Progress is told how far the import has read; total is the file size.
type Progress func(done, total int64)

// Options tune Validate and Launch. Zero values work.
type Options struct {
	Now            time.Time // default time.Now()
	CheckTemplates TemplateChecker
	Progress       Progress
}

func (o Options) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

// Validate checks a campaign file, its templates and its recipients
// without touching Redis. A returned error means the campaign cannot be
// launched; row problems are warnings in the report.
func Validate(ctx context.Context, path string, opt Options) (*config.File, Report, error) {
	f, err := config.Load(path, opt.now())
	if err != nil {
		return nil, Report{}, err
	}
	supp, err := loadSuppression(f)
	if err != nil {
		return nil, Report{}, err
	}
	rep := Report{ImportResult: repermit.ImportResult{Campaign: f.Campaign.ID}, Locales: make(map[string]int64)}
	for _, w := range f.Warnings {
		rep.warn("%s", w)
	}
	// Each distinct CSV locale is resolved once: a million rows share a
	// handful of them.
	cat := locale.Default()
	def := f.Campaign.DefaultLocale
	resolved := make(map[string]string)
	// Recipients per domain, for the projection of the sending time.
	perDomain := make(map[string]int64)
	err = scan(ctx, f, supp, opt.Progress, &rep, func(row recipients.Row, _ [32]byte) error {
		perDomain[row.Email[strings.LastIndexByte(row.Email, '@')+1:]]++
		loc, ok := resolved[row.Locale]
		if !ok {
			loc = cat.Resolve(row.Locale, def)
			if len(resolved) < 10000 {
				resolved[row.Locale] = loc
			}
			if row.Locale != "" && !cat.Known(row.Locale) {
				rep.warn("%s:%d: no language file for locale %q; this recipient and any other with it read %s (default_locale)", f.RecipientsPath, row.Line, row.Locale, loc)
			}
		}
		rep.Locales[loc]++
		// Validate does not touch Redis: a row counts as launchable here
		// even if its address is on the global suppression list, which
		// launch checks.
		rep.Imported++
		return nil
	})
	if err != nil {
		return f, rep, err
	}
	// Nobody may expire unasked because the limits cannot mail everyone
	// in time: such a campaign is refused before it starts.
	if err := f.CheckFeasible(perDomain, opt.now()); err != nil {
		return nil, rep, err
	}
	errs, warns := f.CheckLocales(rep.Locales)
	for _, w := range warns {
		rep.warn("%s", w)
	}
	if len(errs) > 0 {
		return nil, rep, errs
	}
	if opt.CheckTemplates != nil {
		locs := make([]string, 0, len(rep.Locales)+1)
		for l := range rep.Locales {
			locs = append(locs, l)
		}
		if len(locs) == 0 {
			locs = append(locs, def)
		}
		slices.Sort(locs)
		if err := opt.CheckTemplates(&f.Campaign, locs); err != nil {
			return nil, rep, err
		}
	}
	return f, rep, nil
}

func loadSuppression(f *config.File) (map[string]struct{}, error) {
	if f.SuppressionPath == "" {
		return nil, nil
	}
	return recipients.LoadSuppression(f.SuppressionPath)
}

// scan reads the recipients file once, skipping and counting invalid,
// duplicate and file-suppressed rows, and hands every other row to fn with
// the SHA-256 of its address.
func scan(ctx context.Context, f *config.File, supp map[string]struct{}, progress Progress, rep *Report, fn func(recipients.Row, [32]byte) error) error {
	in, err := repermit.OpenFile(f.RecipientsPath)
	if err != nil {
		return repermit.Errorf(repermit.EINVALID, "%s: cannot open recipients file: %v", f.RecipientsPath, errors.Unwrap(err))
	}
	defer in.Close()
	var src io.Reader = in
	if progress != nil {
		if st, err := in.Stat(); err == nil {
			src = &countingReader{r: in, total: st.Size(), progress: progress}
		}
	}
	rd, err := recipients.NewReader(src, f.RecipientsPath)
	if err != nil {
		return err
	}
	// Duplicates are found by a 128-bit prefix of the address hash: 16
	// bytes a row instead of the address, and a collision chance that is
	// nil for any list that fits in Redis.
	seen := make(map[[16]byte]struct{})
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		var rowErr *recipients.RowError
		if errors.As(err, &rowErr) {
			rep.SkippedInvalid++
			rep.warn("%s", rowErr.Error())
			continue
		}
		if err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(row.Email))
		key := [16]byte(sum[:16])
		if _, dup := seen[key]; dup {
			rep.SkippedDuplicate++
			rep.warn("%s:%d: duplicate address %s skipped", f.RecipientsPath, row.Line, row.Email)
			continue
		}
		seen[key] = struct{}{}
		if _, ok := supp[hex.EncodeToString(sum[:])]; ok {
			rep.SkippedSuppressed++
			rep.warn("%s:%d: %s is on the suppression list, skipped", f.RecipientsPath, row.Line, row.Email)
			continue
		}
		if err := fn(row, sum); err != nil {
			return err
		}
	}
	return nil
}

// batchSize is how many rows share one suppression lookup round trip.
const batchSize = 2048

// Launch validates the campaign file, imports the recipients and schedules
// the campaign. Nothing of the campaign stays in Redis unless every step
// succeeds; an id that exists is refused with ECONFLICT before anything is
// written.
//
// The recipients file is read twice: first to find any fatal problem (a
// 1 MB line at row 900,000) before Redis is touched, then to import.
func Launch(ctx context.Context, path string, st Store, sched Scheduler, opt Options) (Report, error) {
	f, pre, err := Validate(ctx, path, Options{Now: opt.now(), CheckTemplates: opt.CheckTemplates})
	if err != nil {
		return pre, err
	}
	if _, err := st.Campaign(ctx, f.Campaign.ID); err == nil {
		return pre, repermit.Errorf(repermit.ECONFLICT, "campaign %q exists already; choose a new id", f.Campaign.ID)
	} else if repermit.ErrorCode(err) != repermit.ENOTFOUND {
		return pre, err
	}
	supp, err := loadSuppression(f)
	if err != nil {
		return pre, err
	}
	imp, err := st.BeginImport(ctx, f.Campaign, opt.now())
	if err != nil {
		return pre, err
	}
	rep, err := importRows(ctx, f, supp, imp, opt.Progress)
	if err == nil {
		err = imp.Commit(ctx, rep.ImportResult)
		if err == nil && sched != nil {
			if err = sched.Schedule(ctx, imp.Campaign()); err != nil {
				err = fmt.Errorf("schedule %s: %w", f.Campaign.ID, err)
			}
		}
	}
	if err != nil {
		if abortErr := imp.Abort(ctx); abortErr != nil {
			return rep, fmt.Errorf("launch %s: %w (and removing the partial import failed: %v)", f.Campaign.ID, err, abortErr)
		}
		return rep, fmt.Errorf("launch %s: %w", f.Campaign.ID, err)
	}
	return rep, nil
}

func importRows(ctx context.Context, f *config.File, supp map[string]struct{}, imp *redisstore.Import, progress Progress) (Report, error) {
	rep := Report{ImportResult: repermit.ImportResult{Campaign: f.Campaign.ID}}
	// A campaign sent in waves is imported in wave order (WaveOrder), so
	// its rows are held until the file is read.
	waves := f.Campaign.Waves != nil
	var held []recipients.Row
	batch := make([]recipients.Row, 0, batchSize)
	hashes := make([]string, 0, batchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		suppressed, err := imp.Suppressed(ctx, hashes)
		if err != nil {
			return err
		}
		for i, row := range batch {
			if suppressed[i] {
				rep.SkippedSuppressed++
				rep.warn("%s:%d: %s is on the global suppression list, skipped", f.RecipientsPath, row.Line, row.Email)
				continue
			}
			if waves {
				held = append(held, row)
				continue
			}
			if err := imp.Add(ctx, row.Email, row.Name, row.Locale, row.Extra); err != nil {
				return err
			}
			rep.Imported++
		}
		batch, hashes = batch[:0], hashes[:0]
		return nil
	}
	err := scan(ctx, f, supp, progress, &rep, func(row recipients.Row, sum [32]byte) error {
		batch = append(batch, row)
		hashes = append(hashes, hex.EncodeToString(sum[:]))
		if len(batch) == batchSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil || !waves {
		return rep, err
	}
	WaveOrder(f.Campaign.ID, held)
	for i, row := range held {
		if i%4096 == 0 && ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if err := imp.Add(ctx, row.Email, row.Name, row.Locale, row.Extra); err != nil {
			return rep, err
		}
		rep.Imported++
	}
	return rep, nil
}

// WaveOrder puts the rows of a campaign sent in waves in the order they
// are mailed: by a hash of the campaign id and the address, so that every
// wave, the pilot first, is a sample of the whole list (each domain in
// about its share, whatever order the file has) and the order is the same
// on every launch of the same file. Recipient indexes follow it, so it
// stays in Redis for the campaign's life.
func WaveOrder(campaign string, rows []recipients.Row) {
	type keyed struct {
		key uint64
		row recipients.Row
	}
	ks := make([]keyed, len(rows))
	for i, r := range rows {
		sum := sha256.Sum256([]byte(campaign + "\x00" + r.Email))
		ks[i] = keyed{binary.BigEndian.Uint64(sum[:8]), r}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	for i := range ks {
		rows[i] = ks[i].row
	}
}

type countingReader struct {
	r        io.Reader
	n, total int64
	last     int64
	progress Progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= 1<<20 || err == io.EOF {
		c.last = c.n
		c.progress(c.n, c.total)
	}
	return n, err
}
