package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
)

// ledgerKindLog marks a campaign whose ledger is the consent log (Merkle
// tree, signed checkpoints); campaigns launched before it lack the field
// and keep their hash chain.
const ledgerKindLog = "tlog"

// Meta fields of the consent log.
const (
	fTreeSize = "tsize" // records hashed into the tree
	fTreeLast = "tlast" // stream id of the last of them
	fCPSize   = "cpsize"
	fCPTime   = "cpms"
)

func (s *Store) treeKey(id string) string         { return s.prefix + ":{" + id + "}:tree" }
func (s *Store) checkpointsKey(id string) string  { return s.prefix + ":{" + id + "}:cp" }
func (s *Store) wordingsKey(id string) string     { return s.prefix + ":{" + id + "}:wording" }
func (s *Store) subjectKeyKey() string            { return s.prefix + ":subjectkey" }
func (s *Store) mailWordingsKey(id string) string { return s.prefix + ":{" + id + "}:mailwording" }

// subjectKeyCache holds the deployment's subject key once read, and the
// subjects computed under it.
type subjectKeyCache struct {
	mu       sync.Mutex
	key      []byte
	subjects *consentlog.Subjects
}

// subjects returns the subjects under the deployment's key (see
// SubjectKey).
func (s *Store) subjects(ctx context.Context) (*consentlog.Subjects, error) {
	if _, err := s.SubjectKey(ctx); err != nil {
		return nil, err
	}
	s.subject.mu.Lock()
	defer s.subject.mu.Unlock()
	return s.subject.subjects, nil
}

// SubjectKey returns the deployment's key of the subject hashes in the
// consent log (consentlog.Subject), making it on first use: 32 random
// bytes, kept in Redis for good. It is not the link secret, so rotating
// that does not break the lookup of a person's records.
func (s *Store) SubjectKey(ctx context.Context) ([]byte, error) {
	s.subject.mu.Lock()
	defer s.subject.mu.Unlock()
	if s.subject.key != nil {
		return s.subject.key, nil
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("subject key: %w", err)
	}
	if err := s.rdb.SetNX(ctx, s.subjectKeyKey(), fresh, 0).Err(); err != nil {
		return nil, unavailable("subject key", err)
	}
	key, err := s.rdb.Get(ctx, s.subjectKeyKey()).Bytes()
	if err != nil {
		return nil, unavailable("subject key", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("subject key %s holds %d bytes, want 32", s.subjectKeyKey(), len(key))
	}
	s.subject.key = key
	s.subject.subjects = consentlog.NewSubjects(key)
	return key, nil
}

// keepWording stores a page wording under its hash, once per campaign
// (HSETNX, and remembered in this process). Wordings are never purged with
// the recipients: every record that points to one stays.
func (s *Store) keepWording(ctx context.Context, id, sum string, text []byte) error {
	k := id + "\x00" + sum
	if _, ok := s.wordings.Load(k); ok {
		return nil
	}
	if err := s.rdb.HSetNX(ctx, s.wordingsKey(id), sum, text).Err(); err != nil {
		return unavailable("keep wording "+id, err)
	}
	s.wordings.Store(k, struct{}{})
	return nil
}

// Wording returns the wording kept under sum; ok is false when none is.
func (s *Store) Wording(ctx context.Context, id, sum string) (text string, ok bool, err error) {
	text, err = s.rdb.HGet(ctx, s.wordingsKey(id), sum).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, unavailable("wording "+id, err)
	}
	return text, true, nil
}

// MailWording names the wording of one mail a campaign sent: the kind
// (Step 0 the initial mail, k reminder k) to recipients of one locale (as
// the recipient's record spells it, "" for the campaign's default), with
// or without a name, and the SHA-256 of its text. The text itself is kept
// with the page wordings, under that hash.
type MailWording struct {
	Step   int
	Locale string
	Named  bool
	SHA256 string
}

func (w MailWording) field() string {
	named := "a"
	if w.Named {
		named = "n"
	}
	return strconv.Itoa(w.Step) + "/" + named + "/" + w.Locale
}

func parseMailWordingField(f, sum string) (MailWording, bool) {
	step, rest, ok := strings.Cut(f, "/")
	named, loc, ok2 := strings.Cut(rest, "/")
	n, err := strconv.Atoi(step)
	if !ok || !ok2 || err != nil || (named != "a" && named != "n") {
		return MailWording{}, false
	}
	return MailWording{Step: n, Locale: loc, Named: named == "n", SHA256: sum}, true
}

// KeepMailWording keeps the wording of a mail the campaign is about to
// send (text hashes to w.SHA256) with the page wordings, and notes in
// P:{ID}:mailwording that this kind went to this locale with it. Both are
// HSETNX, and done once per process: the first wording of a kind and
// locale stays (a campaign's templates do not change after launch).
func (s *Store) KeepMailWording(ctx context.Context, id string, w MailWording, text []byte) error {
	k := id + "\x00mail\x00" + w.field() + "\x00" + w.SHA256
	if _, ok := s.wordings.Load(k); ok {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSetNX(ctx, s.wordingsKey(id), w.SHA256, text)
		p.HSetNX(ctx, s.mailWordingsKey(id), w.field(), w.SHA256)
		return nil
	})
	if err != nil {
		return unavailable("keep mail wording "+id, err)
	}
	s.wordings.Store(k, struct{}{})
	return nil
}

// MailWordings returns the mail wordings campaign id noted as sent, in
// one fixed order (of their fields).
func (s *Store) MailWordings(ctx context.Context, id string) ([]MailWording, error) {
	m, err := s.rdb.HGetAll(ctx, s.mailWordingsKey(id)).Result()
	if err != nil {
		return nil, unavailable("mail wordings "+id, err)
	}
	out := make([]MailWording, 0, len(m))
	for f, sum := range m {
		if w, ok := parseMailWordingField(f, sum); ok {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].field() < out[j].field() })
	return out, nil
}

// ErrLegacyLedger: the campaign was launched before the consent log; its
// ledger is a hash chain without a tree or checkpoints.
var ErrLegacyLedger = errors.New("ledger of the old kind (hash chain, launched before the consent log)")

// LedgerIsLog reports whether campaign id keeps the consent log (true)
// or the hash chain of before it (false). ENOTFOUND for no campaign.
func (s *Store) LedgerIsLog(ctx context.Context, id string) (bool, error) {
	vals, err := s.rdb.HMGet(ctx, s.metaKey(id), fStatus, fLedgerKind).Result()
	if err != nil {
		return false, unavailable("ledger "+id, err)
	}
	if vals[0] == nil {
		return false, repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	}
	return vals[1] == ledgerKindLog, nil
}

// RawLedger calls fn with each stored record of campaign id in order, as
// the bytes stored (for the consent log, the record's canonical form),
// stopping after the first max records (max < 0: all).
func (s *Store) RawLedger(ctx context.Context, id string, max int64, fn func(raw []byte, streamID string) error) error {
	if err := s.drainQueuesOf(ctx, id); err != nil {
		return err
	}
	return s.rawLedgerFrom(ctx, id, "-", max, fn)
}

func (s *Store) rawLedgerFrom(ctx context.Context, id, start string, max int64, fn func(raw []byte, streamID string) error) error {
	const page = 1000
	var n int64
	for {
		msgs, err := s.rdb.XRangeN(ctx, s.ledgerKey(id), start, "+", page).Result()
		if err != nil {
			return unavailable("ledger "+id, err)
		}
		for _, m := range msgs {
			if max >= 0 && n == max {
				return nil
			}
			raw, _ := m.Values["rec"].(string)
			if err := fn([]byte(raw), m.ID); err != nil {
				return err
			}
			n++
		}
		if len(msgs) < page {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// treeReader reads the stored hashes of a campaign's tree: those computed
// in this call from memory, the rest from Redis in one round trip per
// call of ReadHashes.
type treeReader struct {
	ctx context.Context
	s   *Store
	id  string
	mem map[int64]tlog.Hash
}

func (r *treeReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int
	for i, x := range indexes {
		if h, ok := r.mem[x]; ok {
			out[i] = h
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(missing))
	_, err := r.s.rdb.Pipelined(r.ctx, func(p redis.Pipeliner) error {
		for j, i := range missing {
			cmds[j] = p.LIndex(r.ctx, r.s.treeKey(r.id), indexes[i])
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("tree "+r.id, err)
	}
	for j, i := range missing {
		b, _ := cmds[j].Bytes()
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("tree %s: stored hash %d missing", r.id, indexes[i])
		}
		copy(out[i][:], b)
		if r.mem != nil {
			r.mem[indexes[i]] = out[i]
		}
	}
	return out, nil
}

// HashReader reads campaign id's stored tree hashes, for proofs
// (tlog.ProveRecord, tlog.ProveTree) over a size SyncTree reached.
func (s *Store) HashReader(ctx context.Context, id string) tlog.HashReader {
	return &treeReader{ctx: ctx, s: s, id: id}
}

// appendTreeScript adds stored hashes to a campaign's tree if nobody else
// did meanwhile.
//
// KEYS[1] meta hash, KEYS[2] tree list. ARGV[1] tree size the hashes were
// computed on, ARGV[2] new size, ARGV[3] stream id of the last record
// hashed, ARGV[4…] the hashes. Returns 1 if appended, 0 if the size moved.
var appendTreeScript = redis.NewScript(`
local size = tonumber(redis.call('HGET', KEYS[1], 'tsize') or '0')
if size ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 4))
redis.call('HSET', KEYS[1], 'tsize', ARGV[2], 'tlast', ARGV[3])
return 1
`)

// SyncTree hashes the records appended since the last call into the
// campaign's tree and returns its size and hash. Several processes may
// call it at once: the script takes one batch, the others start again
// from where it ended.
func (s *Store) SyncTree(ctx context.Context, id string) (int64, tlog.Hash, error) {
	isLog, err := s.LedgerIsLog(ctx, id)
	if err != nil {
		return 0, tlog.Hash{}, err
	}
	if !isLog {
		return 0, tlog.Hash{}, fmt.Errorf("campaign %s: %w", id, ErrLegacyLedger)
	}
	if err := s.drainQueuesOf(ctx, id); err != nil {
		return 0, tlog.Hash{}, err
	}
	for attempt := 0; ; attempt++ {
		if attempt == 100 {
			return 0, tlog.Hash{}, repermit.Errorf(repermit.EUNAVAILABLE, "tree %s: too many concurrent updates", id)
		}
		vals, err := s.rdb.HMGet(ctx, s.metaKey(id), fTreeSize, fTreeLast).Result()
		if err != nil {
			return 0, tlog.Hash{}, unavailable("tree "+id, err)
		}
		size, _ := strconv.ParseInt(fmt.Sprint(vals[0]), 10, 64)
		last, _ := vals[1].(string)
		start := "-"
		if last != "" {
			start = "(" + last
		}
		r := &treeReader{ctx: ctx, s: s, id: id, mem: map[int64]tlog.Hash{}}
		n := size
		var hashes []any
		lastID := last
		const batch = 4096
		err = s.rawLedgerFrom(ctx, id, start, batch, func(raw []byte, streamID string) error {
			hs, err := tlog.StoredHashes(n, raw, r)
			if err != nil {
				return fmt.Errorf("tree %s: record %d: %w", id, n+1, err)
			}
			base := tlog.StoredHashCount(n)
			for i, h := range hs {
				r.mem[base+int64(i)] = h
				hashes = append(hashes, h[:])
			}
			n++
			lastID = streamID
			return nil
		})
		if err != nil {
			return 0, tlog.Hash{}, err
		}
		if n == size {
			th, err := tlog.TreeHash(size, r)
			if err != nil {
				return 0, tlog.Hash{}, fmt.Errorf("tree %s: %w", id, err)
			}
			return size, th, nil
		}
		args := append([]any{size, n, lastID}, hashes...)
		ok, err := appendTreeScript.Run(ctx, s.rdb, []string{s.metaKey(id), s.treeKey(id)}, args...).Int()
		if err != nil {
			return 0, tlog.Hash{}, unavailable("tree "+id, err)
		}
		_ = ok // appended or overtaken: either way read the size again
	}
}

// addCheckpointScript appends a signed checkpoint if it is larger than the
// last one and at least the gap after it.
//
// KEYS[1] meta hash, KEYS[2] checkpoint list. ARGV[1] size, ARGV[2] time
// (unix ms), ARGV[3] least gap in ms, ARGV[4] the signed note. Returns 1
// if appended, 0 if not.
var addCheckpointScript = redis.NewScript(`
local size = tonumber(redis.call('HGET', KEYS[1], 'cpsize') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'cpms') or '0')
if tonumber(ARGV[1]) <= size then return 0 end
if last > 0 and tonumber(ARGV[2]) - last < tonumber(ARGV[3]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], 'cpsize', ARGV[1], 'cpms', ARGV[2])
return 1
`)

// AddCheckpoint keeps a signed checkpoint of size records made at at,
// unless one of as many records or more is kept already, or the last one
// is younger than gap. It reports whether it kept this one.
func (s *Store) AddCheckpoint(ctx context.Context, id string, size int64, at time.Time, gap time.Duration, signed string) (bool, error) {
	ok, err := addCheckpointScript.Run(ctx, s.rdb, []string{s.metaKey(id), s.checkpointsKey(id)},
		size, at.UnixMilli(), gap.Milliseconds(), signed).Int()
	if err != nil {
		return false, unavailable("checkpoint "+id, err)
	}
	return ok == 1, nil
}

// Checkpoints returns the campaign's signed checkpoints, oldest first.
func (s *Store) Checkpoints(ctx context.Context, id string) ([]string, error) {
	cps, err := s.rdb.LRange(ctx, s.checkpointsKey(id), 0, -1).Result()
	if err != nil {
		return nil, unavailable("checkpoints "+id, err)
	}
	return cps, nil
}

// RecordsOf returns the stored records of campaign id whose subject is
// subject, in log order, as stored.
func (s *Store) RecordsOf(ctx context.Context, id, subject string) ([][]byte, error) {
	needle := `"subject":"` + subject + `"`
	var out [][]byte
	err := s.RawLedger(ctx, id, -1, func(raw []byte, _ string) error {
		if strings.Contains(string(raw), needle) {
			out = append(out, raw)
		}
		return nil
	})
	return out, err
}

// fWitnessed is the size of the last checkpoint published to the witness.
const fWitnessed = "wsize"

// Witnessed returns the size of the last checkpoint published to the
// witness (0: none).
func (s *Store) Witnessed(ctx context.Context, id string) (int64, error) {
	n, err := s.rdb.HGet(ctx, s.metaKey(id), fWitnessed).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("witnessed "+id, err)
	}
	return n, nil
}

// SetWitnessed notes that the checkpoint of size records was published.
func (s *Store) SetWitnessed(ctx context.Context, id string, size int64) error {
	if err := s.rdb.HSet(ctx, s.metaKey(id), fWitnessed, size).Err(); err != nil {
		return unavailable("witnessed "+id, err)
	}
	return nil
}

// LedgerAfter calls fn with up to max stored records after stream id
// after ("" from the start), as stored, with their stream ids.
func (s *Store) LedgerAfter(ctx context.Context, id, after string, max int64, fn func(raw []byte, streamID string) error) error {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	return s.rawLedgerFrom(ctx, id, start, max, fn)
}

// WebhookState is the delivery of one webhook of a campaign: how far it
// got in the consent log and in the outbox (events.go).
type WebhookState struct {
	Position        string // stream id of the last consent record delivered
	Delivered       int64  // consent records delivered
	EventPosition   string // stream id of the last outbox event delivered
	EventsDelivered int64
	Failures        int64 // failed attempts so far
}

func whField(i int, what string) string { return "wh:" + strconv.Itoa(i) + ":" + what }

// Webhook returns the delivery state of webhook i of campaign id.
func (s *Store) Webhook(ctx context.Context, id string, i int) (WebhookState, error) {
	vals, err := s.rdb.HMGet(ctx, s.metaKey(id), whField(i, "pos"), whField(i, "n"), whField(i, "fail"),
		whField(i, "epos"), whField(i, "en")).Result()
	if err != nil {
		return WebhookState{}, unavailable("webhook "+id, err)
	}
	var w WebhookState
	w.Position, _ = vals[0].(string)
	w.Delivered, _ = strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
	w.Failures, _ = strconv.ParseInt(fmt.Sprint(vals[2]), 10, 64)
	w.EventPosition, _ = vals[3].(string)
	w.EventsDelivered, _ = strconv.ParseInt(fmt.Sprint(vals[4]), 10, 64)
	return w, nil
}

// WebhookDelivered moves webhook i's positions to st's: past the last
// consent record and outbox event it accepted.
func (s *Store) WebhookDelivered(ctx context.Context, id string, i int, st WebhookState) error {
	err := s.rdb.HSet(ctx, s.metaKey(id), whField(i, "pos"), st.Position, whField(i, "n"), st.Delivered,
		whField(i, "epos"), st.EventPosition, whField(i, "en"), st.EventsDelivered).Err()
	if err != nil {
		return unavailable("webhook "+id, err)
	}
	return nil
}

// WebhookFailed counts a failed attempt of webhook i.
func (s *Store) WebhookFailed(ctx context.Context, id string, i int) error {
	if err := s.rdb.HIncrBy(ctx, s.metaKey(id), whField(i, "fail"), 1).Err(); err != nil {
		return unavailable("webhook "+id, err)
	}
	return nil
}

// WebhookTotals returns how many consent records and outbox events
// campaign id has written: what each of its webhooks is to deliver.
func (s *Store) WebhookTotals(ctx context.Context, id string) (records, events int64, err error) {
	if err := s.drainQueuesOf(ctx, id); err != nil {
		return 0, 0, err
	}
	vals, err := s.rdb.HMGet(ctx, s.metaKey(id), fLedgerSeq, fEvents).Result()
	if err != nil {
		return 0, 0, unavailable("webhook totals "+id, err)
	}
	records, _ = strconv.ParseInt(fmt.Sprint(vals[0]), 10, 64)
	events, _ = strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
	return records, events, nil
}

// LedgerSize is the number of records in campaign id's ledger.
func (s *Store) LedgerSize(ctx context.Context, id string) (int64, error) {
	n, err := s.rdb.HGet(ctx, s.metaKey(id), fLedgerSeq).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("ledger "+id, err)
	}
	return n, nil
}
