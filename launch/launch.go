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
	"os"
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
	// ShardsFor is the number of shards of a campaign of rows recipients
	// whose file names none.
	ShardsFor(rows int) int
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
	Now time.Time // default time.Now()
	// TempDir holds the sort files of the duplicate search and of the
	// wave order, about 24 bytes a row (and a row's size for a campaign in
	// waves) while Validate or Launch runs; default os.TempDir().
	TempDir string
	// SortMemory bounds the bytes each of those sorts holds in memory
	// before it writes a sorted run to TempDir; default 8 MiB.
	SortMemory     int
	CheckTemplates TemplateChecker
	Progress       Progress
}

func (o Options) sortMemory() int {
	if o.SortMemory <= 0 {
		return sortBudget
	}
	return o.SortMemory
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
	tmp, err := os.MkdirTemp(opt.TempDir, "repermit-validate-")
	if err != nil {
		return nil, Report{}, fmt.Errorf("validate: %w", err)
	}
	defer os.RemoveAll(tmp)
	f, rep, _, err := validate(ctx, path, tmp, opt)
	return f, rep, err
}

// validate is Validate with its temporary files in tmp; it also returns
// the rows that duplicate an earlier one, for Launch's import.
func validate(ctx context.Context, path, tmp string, opt Options) (*config.File, Report, *bitset, error) {
	f, err := config.Load(path, opt.now())
	if err != nil {
		return nil, Report{}, nil, err
	}
	supp, err := loadSuppression(f)
	if err != nil {
		return nil, Report{}, nil, err
	}
	dups, err := findDuplicates(ctx, f, tmp, opt.sortMemory())
	if err != nil {
		return f, Report{}, nil, err
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
	err = scan(ctx, f, supp, dups, opt.Progress, &rep, func(row recipients.Row, _ [32]byte) error {
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
		return f, rep, nil, err
	}
	// Nobody may expire unasked because the limits cannot mail everyone
	// in time: such a campaign is refused before it starts.
	if err := f.CheckFeasible(perDomain, opt.now()); err != nil {
		return nil, rep, nil, err
	}
	errs, warns := f.CheckLocales(rep.Locales)
	for _, w := range warns {
		rep.warn("%s", w)
	}
	if len(errs) > 0 {
		return nil, rep, nil, errs
	}
	if opt.CheckTemplates != nil {
		locs := make([]string, 0, len(rep.Locales)+1)
		for l := range rep.Locales {
			locs = append(locs, l)
		}
		if len(locs) == 0 {
			locs = append(locs, def)
		}
		// A campaign's override for a locale the catalog lacks
		// (initial.de-at.txt, pages/landing.pt.html) is what recipients of
		// that locale get instead of their resolved language's: it is
		// checked with their own locale. The defaults render the same for
		// de-AT as for de, so without overrides the resolved ones suffice.
		if f.Campaign.TemplatesDir != "" {
			for raw := range resolved {
				if l := locale.Normalize(raw); l != "" && !cat.Has(l) && !slices.Contains(locs, l) {
					locs = append(locs, l)
				}
			}
		}
		slices.Sort(locs)
		if err := opt.CheckTemplates(&f.Campaign, locs); err != nil {
			return nil, rep, nil, err
		}
	}
	return f, rep, dups, nil
}

func loadSuppression(f *config.File) (map[string]struct{}, error) {
	if f.SuppressionPath == "" {
		return nil, nil
	}
	return recipients.LoadSuppression(f.SuppressionPath)
}

// openRows opens the recipients file for one pass.
func openRows(f *config.File, progress Progress) (*recipients.Reader, io.Closer, error) {
	in, err := repermit.OpenFile(f.RecipientsPath)
	if err != nil {
		return nil, nil, repermit.Errorf(repermit.EINVALID, "%s: cannot open recipients file: %v", f.RecipientsPath, errors.Unwrap(err))
	}
	var src io.Reader = in
	if progress != nil {
		if st, err := in.Stat(); err == nil {
			src = &countingReader{r: in, total: st.Size(), progress: progress}
		}
	}
	rd, err := recipients.NewReader(src, f.RecipientsPath)
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	return rd, in, nil
}

// eachRow calls fn with every valid row of the recipients file and its
// number among the valid rows (0-based), and counts and warns about the
// invalid ones in rep. It stops at the first error that is not a row's.
func eachRow(ctx context.Context, f *config.File, progress Progress, rep *Report, fn func(recipients.Row, int) error) error {
	rd, in, err := openRows(f, progress)
	if err != nil {
		return err
	}
	defer in.Close()
	valid := 0
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		row, err := rd.Next()
		if err == io.EOF {
			return nil
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
		if err := fn(row, valid); err != nil {
			return err
		}
		valid++
	}
}

// findDuplicates reads the recipients file and returns the valid rows
// (by their number among the valid rows) whose address an earlier row
// has. It holds no map of the addresses: it sorts a 128-bit prefix of each
// address's hash with the row's number (24 bytes a row) on disk in tmp
// and marks every row after the first of a run of equal hashes, one bit a
// row. The collision chance of 128 bits is nil for any list that fits in
// Redis.
func findDuplicates(ctx context.Context, f *config.File, tmp string, budget int) (*bitset, error) {
	srt := newSorter(tmp, budget)
	defer srt.Close()
	var rec [24]byte
	var discard Report // the scan that follows reports the invalid rows
	rows := 0
	err := eachRow(ctx, f, nil, &discard, func(row recipients.Row, i int) error {
		sum := sha256.Sum256([]byte(row.Email))
		copy(rec[:16], sum[:16])
		binary.BigEndian.PutUint64(rec[16:], uint64(i))
		rows = i + 1
		return srt.Add(rec[:])
	})
	if err != nil {
		return nil, err
	}
	m, err := srt.Sorted()
	if err != nil {
		return nil, err
	}
	dups := newBitset(rows)
	var prev [16]byte
	for first := true; ; first = false {
		r, err := m.Next()
		if err == io.EOF {
			return dups, nil
		}
		if err != nil {
			return nil, err
		}
		if !first && [16]byte(r[:16]) == prev {
			// Rows of one hash come in file order: the first stays.
			dups.set(int(binary.BigEndian.Uint64(r[16:])))
		}
		prev = [16]byte(r[:16])
	}
}

// scan reads the recipients file once, skipping and counting invalid,
// duplicate (as dups says) and file-suppressed rows, and hands every other
// row to fn with the SHA-256 of its address.
func scan(ctx context.Context, f *config.File, supp map[string]struct{}, dups *bitset, progress Progress, rep *Report, fn func(recipients.Row, [32]byte) error) error {
	return eachRow(ctx, f, progress, rep, func(row recipients.Row, i int) error {
		if dups.has(i) {
			rep.SkippedDuplicate++
			rep.warn("%s:%d: duplicate address %s skipped", f.RecipientsPath, row.Line, row.Email)
			return nil
		}
		sum := sha256.Sum256([]byte(row.Email))
		if _, ok := supp[hex.EncodeToString(sum[:])]; ok {
			rep.SkippedSuppressed++
			rep.warn("%s:%d: %s is on the suppression list, skipped", f.RecipientsPath, row.Line, row.Email)
			return nil
		}
		return fn(row, sum)
	})
}

// bitset is one bit per row.
type bitset struct {
	w []uint64
	n int // bits
}

func newBitset(n int) *bitset { return &bitset{w: make([]uint64, (n+63)/64), n: n} }

func (b *bitset) set(i int) { b.w[i/64] |= 1 << (i % 64) }

func (b *bitset) has(i int) bool { return i/64 < len(b.w) && b.w[i/64]&(1<<(i%64)) != 0 }

// batchSize is how many rows share one suppression lookup round trip.
const batchSize = 2048

// Launch validates the campaign file, imports the recipients and schedules
// the campaign. Nothing of the campaign stays in Redis unless every step
// succeeds; an id that exists is refused with ECONFLICT before anything is
// written.
//
// The recipients file is read three times: to find the duplicates (see
// findDuplicates), to find any fatal problem (a 1 MB line at row 900,000)
// before Redis is touched, then to import.
func Launch(ctx context.Context, path string, st Store, sched Scheduler, opt Options) (Report, error) {
	tmp, err := os.MkdirTemp(opt.TempDir, "repermit-launch-")
	if err != nil {
		return Report{}, fmt.Errorf("launch: %w", err)
	}
	defer os.RemoveAll(tmp)
	f, pre, dups, err := validate(ctx, path, tmp, Options{Now: opt.now(), CheckTemplates: opt.CheckTemplates, SortMemory: opt.SortMemory})
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
	if f.Campaign.Shards == 0 {
		// The valid rows, duplicates included: close enough to size the
		// shards.
		f.Campaign.Shards = st.ShardsFor(dups.n)
	}
	imp, err := st.BeginImport(ctx, f.Campaign, opt.now())
	if err != nil {
		return pre, err
	}
	rep, err := importRows(ctx, f, supp, dups, imp, tmp, opt.sortMemory(), opt.Progress)
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

func importRows(ctx context.Context, f *config.File, supp map[string]struct{}, dups *bitset, imp *redisstore.Import, tmp string, budget int, progress Progress) (Report, error) {
	rep := Report{ImportResult: repermit.ImportResult{Campaign: f.Campaign.ID}}
	// A campaign sent in waves is imported in wave order (WaveOrder): its
	// rows go through an external sort on disk, keyed by their wave key
	// and then their place in the file, and are added when the file is
	// read.
	var waves *sorter
	if f.Campaign.Waves != nil {
		waves = newSorter(tmp, budget)
		defer waves.Close()
	}
	held := 0
	var rec []byte
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
			if waves != nil {
				rec = appendWaveRecord(rec[:0], f.Campaign.ID, held, row)
				held++
				if err := waves.Add(rec); err != nil {
					return err
				}
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
	err := scan(ctx, f, supp, dups, progress, &rep, func(row recipients.Row, sum [32]byte) error {
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
	if err != nil || waves == nil {
		return rep, err
	}
	m, err := waves.Sorted()
	if err != nil {
		return rep, err
	}
	for i := 0; ; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return rep, ctx.Err()
		}
		r, err := m.Next()
		if err == io.EOF {
			return rep, nil
		}
		if err != nil {
			return rep, err
		}
		row, err := decodeWaveRecord(r)
		if err != nil {
			return rep, err
		}
		if err := imp.Add(ctx, row.Email, row.Name, row.Locale, row.Extra); err != nil {
			return rep, err
		}
		rep.Imported++
	}
}

// WaveOrder puts the rows of a campaign sent in waves in the order they
// are mailed: by a hash of the campaign id and the address, so that every
// wave, the pilot first, is a sample of the whole list (each domain in
// about its share, whatever order the file has) and the order is the same
// on every launch of the same file; rows of equal key keep their order.
// Recipient indexes follow it, so it stays in Redis for the campaign's
// life. Launch sorts on disk by the same key; this in-memory form is its
// definition.
func WaveOrder(campaign string, rows []recipients.Row) {
	type keyed struct {
		key uint64
		row recipients.Row
	}
	ks := make([]keyed, len(rows))
	for i, r := range rows {
		ks[i] = keyed{waveKey(campaign, r.Email), r}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	for i := range ks {
		rows[i] = ks[i].row
	}
}

func waveKey(campaign, email string) uint64 {
	sum := sha256.Sum256([]byte(campaign + "\x00" + email))
	return binary.BigEndian.Uint64(sum[:8])
}

// appendWaveRecord appends the sort record of row, the i-th row held for
// the waves: its wave key and i (big-endian, so bytes sort as WaveOrder
// does), then the row's line, address, name, locale and extra columns,
// each string after its length.
func appendWaveRecord(b []byte, campaign string, i int, row recipients.Row) []byte {
	b = binary.BigEndian.AppendUint64(b, waveKey(campaign, row.Email))
	b = binary.BigEndian.AppendUint64(b, uint64(i))
	b = binary.AppendUvarint(b, uint64(row.Line))
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(row.Email)
	str(row.Name)
	str(row.Locale)
	b = binary.AppendUvarint(b, uint64(len(row.Extra)))
	for k, v := range row.Extra {
		str(k)
		str(v)
	}
	return b
}

var errBadRecord = errors.New("launch: corrupt wave sort record")

func decodeWaveRecord(b []byte) (recipients.Row, error) {
	var row recipients.Row
	if len(b) < 16 {
		return row, errBadRecord
	}
	b = b[16:]
	num := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	str := func() (string, bool) {
		n, ok := num()
		if !ok || n > uint64(len(b)) {
			return "", false
		}
		s := string(b[:n])
		b = b[n:]
		return s, true
	}
	line, ok1 := num()
	row.Line = int(line)
	var ok2, ok3, ok4 bool
	row.Email, ok2 = str()
	row.Name, ok3 = str()
	row.Locale, ok4 = str()
	n, ok5 := num()
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return row, errBadRecord
	}
	if n > 0 {
		row.Extra = make(map[string]string, n)
		for range n {
			k, okk := str()
			v, okv := str()
			if !okk || !okv {
				return row, errBadRecord
			}
			row.Extra[k] = v
		}
	}
	return row, nil
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
