package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// importLease is how long an import may go without a heartbeat before a new
// launch of the same id treats it as crashed and clears it.
const importLease = 2 * time.Minute

// beginImportScript reserves a campaign id.
//
// KEYS[1] meta hash. ARGV[1] config JSON, ARGV[2] seq, ARGV[3] now ms,
// ARGV[4] lease ms, ARGV[5] deadline ms, ARGV[6] shards ("" for one).
// Returns "ok", "exists" or "stale" (a crashed import the caller must clear).
var beginImportScript = luaScript(`
local status = redis.call('HGET', KEYS[1], F_STATUS)
if status then
  if status ~= STATUS_IMPORTING then return 'exists' end
  local hb = tonumber(redis.call('HGET', KEYS[1], F_HEARTBEAT) or '0')
  if hb + tonumber(ARGV[4]) > tonumber(ARGV[3]) then return 'exists' end
  return 'stale'
end
redis.call('HSET', KEYS[1], F_STATUS, STATUS_IMPORTING, F_CONFIG, ARGV[1], F_SEQ, ARGV[2],
  F_HEARTBEAT, ARGV[3], F_DEADLINE, ARGV[5], F_HIGH_WATER, '0')
-- The number of shards is there from the start, so that Abort and the
-- stale import cleanup find every shard's keys.
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], F_SHARDS, ARGV[6]) end
return 'ok'
`)

// Import writes one campaign's recipients. Until Commit the campaign is in
// status importing, which every reader treats as absent, so an import that
// fails half-way is invisible and Abort (or the next launch of the id)
// removes it.
type Import struct {
	s        *Store
	c        repermit.Campaign
	next     int64 // index of the next recipient
	pipe     redis.Pipeliner
	pending  int
	maxBkt   int64
	lastBeat time.Time
	cols     columnIndex // the extra columns met so far, see row.go
	colsSent int         // how many of them meta holds
	lay      layout
	perShard []int64 // recipients added to each shard
}

// BeginImport reserves c.ID and assigns c.Seq. It fails with ECONFLICT when
// the id exists.
func (s *Store) BeginImport(ctx context.Context, c repermit.Campaign, now time.Time) (*Import, error) {
	if c.Shards < 0 || c.Shards > MaxShards {
		return nil, repermit.Errorf(repermit.EINVALID, "campaign %s: shards must be 1 to %d", c.ID, MaxShards)
	}
	lay := layout{prefix: s.prefix, id: c.ID, n: int64(max(1, c.Shards))}
	shards := ""
	if lay.n > 1 {
		shards = strconv.FormatInt(lay.n, 10)
	} else {
		// One shard is written as it always was, config included.
		c.Shards = 0
	}
	for attempt := 0; attempt < 2; attempt++ {
		seq, err := s.rdb.Incr(ctx, s.seqKey()).Result()
		if err != nil {
			return nil, unavailable("launch "+c.ID, err)
		}
		if seq > int64(^uint32(0)) {
			return nil, fmt.Errorf("launch %s: campaign sequence exhausted", c.ID)
		}
		c.Seq = uint32(seq)
		c.Status = repermit.StatusImporting
		c.CreatedAt = now
		c.BoundTokens = true
		cfg, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("launch %s: %w", c.ID, err)
		}
		res, err := beginImportScript.Run(ctx, s.rdb, []string{s.metaKey(c.ID)},
			cfg, seq, now.UnixMilli(), importLease.Milliseconds(), c.Deadline.UnixMilli(), shards).Text()
		if err != nil {
			return nil, unavailable("launch "+c.ID, err)
		}
		switch res {
		case "ok":
			return &Import{s: s, c: c, pipe: s.rdb.Pipeline(), lastBeat: now, lay: lay, perShard: make([]int64, lay.n)}, nil
		case "exists":
			return nil, repermit.Errorf(repermit.ECONFLICT, "campaign %q exists already; choose a new id", c.ID)
		case "stale":
			if err := s.deleteCampaignKeys(ctx, c.ID); err != nil {
				return nil, err
			}
		}
	}
	return nil, repermit.Errorf(repermit.ECONFLICT, "campaign %q is being launched by another process", c.ID)
}

// Campaign returns the campaign being imported, with its Seq.
func (imp *Import) Campaign() repermit.Campaign { return imp.c }

// Suppressed reports for each hash whether it is on the global suppression
// list. It also renews the import's lease: a campaign sent in waves holds
// its rows until the whole file is read, checking each batch here, so no
// flush renews it meanwhile.
func (imp *Import) Suppressed(ctx context.Context, hashes []string) ([]bool, error) {
	if err := imp.beat(ctx); err != nil {
		return nil, err
	}
	return imp.s.IsSuppressed(ctx, hashes)
}

// beatEvery is how often a working import renews its lease (importLease)
// when it writes no rows.
const beatEvery = importLease / 4

// beat renews the import's lease if the last renewal is beatEvery old, so
// that a launch of the same id does not take a slow import for a crashed
// one and delete it under it.
func (imp *Import) beat(ctx context.Context) error {
	now := time.Now()
	if now.Sub(imp.lastBeat) < beatEvery {
		return nil
	}
	if err := imp.s.rdb.HSet(ctx, imp.s.metaKey(imp.c.ID), fHeartbeat, now.UnixMilli()).Err(); err != nil {
		return unavailable("import "+imp.c.ID, err)
	}
	imp.lastBeat = now
	return nil
}

// flushEvery bounds how many commands wait in the pipeline.
const flushEvery = 64 * BucketSize

// Add queues one recipient. Writes go out in pipelined batches.
func (imp *Import) Add(ctx context.Context, email, name, locale string, extra map[string]string) error {
	b, slot := bucketOf(imp.next)
	imp.next++
	fields := append([]any{"s" + slot, "p"}, rowFields(slot, encodeRow(email, name, locale, extra, &imp.cols))...)
	imp.pipe.HSet(ctx, imp.lay.bucket(b), fields...)
	imp.perShard[imp.lay.shardOf(b)]++
	imp.maxBkt = b
	imp.pending++
	if imp.pending >= flushEvery {
		return imp.flush(ctx)
	}
	return nil
}

func (imp *Import) flush(ctx context.Context) error {
	// The high-water mark travels with the batch, so Abort and the stale
	// import cleanup know every bucket that may exist.
	meta := imp.s.metaKey(imp.c.ID)
	imp.lastBeat = time.Now()
	imp.pipe.HSet(ctx, meta, fHighWater, imp.maxBkt+1, fHeartbeat, imp.lastBeat.UnixMilli())
	if len(imp.cols.names) > imp.colsSent {
		// The column list goes out with the rows that name its columns.
		js, err := json.Marshal(imp.cols.names)
		if err != nil {
			return fmt.Errorf("import %s: %w", imp.c.ID, err)
		}
		imp.pipe.HSet(ctx, meta, fColumns, js)
		imp.colsSent = len(imp.cols.names)
	}
	_, err := imp.pipe.Exec(ctx)
	imp.pending = 0
	if err != nil {
		return unavailable("import "+imp.c.ID, err)
	}
	return nil
}

// Commit makes the campaign visible with its counts. It is the single write
// that turns an import into a launched campaign.
func (imp *Import) Commit(ctx context.Context, r repermit.ImportResult) error {
	if imp.pending > 0 {
		if err := imp.flush(ctx); err != nil {
			return err
		}
	}
	imp.c.Status = repermit.StatusRunning
	cfg, err := json.Marshal(imp.c)
	if err != nil {
		return fmt.Errorf("commit %s: %w", imp.c.ID, err)
	}
	meta := imp.s.metaKey(imp.c.ID)
	if err := imp.commitShards(ctx); err != nil {
		return err
	}
	_, err = imp.s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, meta,
			fConfig, cfg,
			fImported, imp.next,
			fSkipInv, r.SkippedInvalid,
			fSkipDup, r.SkippedDuplicate,
			fSkipSupp, r.SkippedSuppressed,
			fCountPfx+string(repermit.StatePending), imp.perShard[0],
			fStatus, string(repermit.StatusRunning),
			fLedgerKind, ledgerKindLog,
		)
		if len(imp.c.Webhooks) > 0 {
			p.HSet(ctx, meta, fEventsOn, "1")
		}
		p.HDel(ctx, meta, fHeartbeat)
		return nil
	})
	if err != nil {
		return unavailable("commit "+imp.c.ID, err)
	}
	// The index sets live outside the campaign's slot, so they cannot join
	// the transaction; a crash here leaves a running campaign that the
	// listing misses until the next launch or status call repairs it.
	if err := imp.s.index(ctx, imp.c); err != nil {
		return err
	}
	imp.s.shards.set(imp.c.ID, imp.lay.n)
	return nil
}

// commitShards writes the meta hash of every shard but home: what its
// transitions check (status, deadline, whether events are written) and
// its count of pending recipients. They are written before home's commit,
// which alone makes the campaign visible: until then nobody claims in
// them, and a failure leaves them to Abort, which finds them by home's
// number of shards.
func (imp *Import) commitShards(ctx context.Context) error {
	if imp.lay.n == 1 {
		return nil
	}
	_, err := imp.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k := int64(1); k < imp.lay.n; k++ {
			fields := []any{
				fShardOf, k,
				fStatus, string(repermit.StatusRunning),
				fDeadline, imp.c.Deadline.UnixMilli(),
				fCountPfx + string(repermit.StatePending), imp.perShard[k],
			}
			if len(imp.c.Webhooks) > 0 {
				fields = append(fields, fEventsOn, "1")
			}
			p.HSet(ctx, imp.lay.meta(k), fields...)
		}
		return nil
	})
	if err != nil {
		return unavailable("commit "+imp.c.ID, err)
	}
	return nil
}

func (s *Store) index(ctx context.Context, c repermit.Campaign) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, s.campaignsKey(), redis.Z{Score: float64(c.CreatedAt.Unix()), Member: c.ID})
		p.HSet(ctx, s.seqsKey(), strconv.FormatUint(uint64(c.Seq), 10), c.ID)
		return nil
	})
	if err != nil {
		return unavailable("index "+c.ID, err)
	}
	return nil
}

// Abort removes everything the import wrote.
func (imp *Import) Abort(ctx context.Context) error {
	imp.pipe.Discard()
	// Use a fresh context: the caller's may be the one that was cancelled.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return imp.s.deleteCampaignKeys(ctx, imp.c.ID)
}

// deleteCampaignKeys removes every key of a campaign.
func (s *Store) deleteCampaignKeys(ctx context.Context, id string) error {
	s.cols.forget(id)
	s.shards.forget(id)
	vals, err := s.rdb.HMGet(ctx, s.metaKey(id), fHighWater, fSeq, fShards).Result()
	if err != nil {
		return unavailable("delete "+id, err)
	}
	hw, _ := strconv.ParseInt(fmt.Sprint(vals[0]), 10, 64)
	lay := s.home(id)
	if n, err := strconv.ParseInt(fmt.Sprint(vals[2]), 10, 64); err == nil && n > 1 {
		lay.n = n
	}
	if seq, ok := vals[1].(string); ok {
		// A commit that got as far as the index must not leave a dangling
		// entry that points at nothing.
		if err := s.rdb.HDel(ctx, s.seqsKey(), seq).Err(); err != nil {
			return unavailable("delete "+id, err)
		}
	}
	if err := s.rdb.ZRem(ctx, s.campaignsKey(), id).Err(); err != nil {
		return unavailable("delete "+id, err)
	}
	// A cluster refuses a command over keys of several slots: one UNLINK
	// per shard and 512 keys.
	byShard := make([][]string, lay.n)
	for b := int64(0); b < hw; b++ {
		k := lay.shardOf(b)
		byShard[k] = append(byShard[k], lay.bucket(b), lay.supLogOfBucket(b))
	}
	for i := 0; i < supLogKeys; i++ {
		digits := fmt.Sprintf("%03x", i)
		k := lay.supLogShard(digits)
		byShard[k] = append(byShard[k], lay.supLog(digits))
	}
	for k := int64(1); k < lay.n; k++ {
		byShard[k] = append(byShard[k], lay.shardKeys(k)...)
	}
	for _, keys := range byShard {
		for start := 0; start < len(keys); start += 512 {
			if err := s.rdb.Unlink(ctx, keys[start:min(len(keys), start+512)]...).Err(); err != nil {
				return unavailable("delete "+id, err)
			}
		}
	}
	// Home's meta hash goes last: it names the shards.
	if err := s.rdb.Unlink(ctx, lay.supp(0), s.ledgerKey(id), s.eventsKey(id), lay.timeline(0), s.metaKey(id),
		s.feedbackSeenKey(id), s.softKey(id), s.treeKey(id), s.checkpointsKey(id), s.wordingsKey(id), s.mailWordingsKey(id)).Err(); err != nil {
		return unavailable("delete "+id, err)
	}
	return nil
}

// Campaign returns a launched campaign with its current status. ENOTFOUND
// when it does not exist or is still importing.
func (s *Store) Campaign(ctx context.Context, id string) (*repermit.Campaign, error) {
	vals, err := s.rdb.HMGet(ctx, s.metaKey(id), fConfig, fStatus).Result()
	if err != nil {
		return nil, unavailable("campaign "+id, err)
	}
	cfg, _ := vals[0].(string)
	status, _ := vals[1].(string)
	if cfg == "" || status == "" || status == string(repermit.StatusImporting) {
		return nil, repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	}
	var c repermit.Campaign
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		return nil, fmt.Errorf("campaign %s: decode config: %w", id, err)
	}
	c.Status = repermit.CampaignStatus(status)
	return &c, nil
}

// CampaignBySeq finds the campaign a token points to.
func (s *Store) CampaignBySeq(ctx context.Context, seq uint32) (*repermit.Campaign, error) {
	id, err := s.rdb.HGet(ctx, s.seqsKey(), strconv.FormatUint(uint64(seq), 10)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, repermit.Errorf(repermit.ENOTFOUND, "no campaign with sequence %d", seq)
	}
	if err != nil {
		return nil, unavailable("campaign by seq", err)
	}
	return s.Campaign(ctx, id)
}

// Campaigns lists the launched campaigns, oldest first.
func (s *Store) Campaigns(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.campaignsKey(), 0, -1).Result()
	if err != nil {
		return nil, unavailable("list campaigns", err)
	}
	return ids, nil
}

// SetStatus moves a campaign from one of the statuses in from to to; it
// returns ECONFLICT naming the current status otherwise.
func (s *Store) SetStatus(ctx context.Context, id string, to repermit.CampaignStatus, from ...repermit.CampaignStatus) error {
	allowed := make([]any, len(from))
	for i, f := range from {
		allowed[i] = string(f)
	}
	res, err := setStatusScript.Run(ctx, s.rdb, []string{s.metaKey(id)}, append([]any{string(to)}, allowed...)...).Text()
	if err != nil {
		return unavailable("set status "+id, err)
	}
	switch {
	case res == "ok":
		return s.copyStatusOf(ctx, id)
	case res == "missing":
		return repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	default:
		cur := strings.TrimPrefix(res, "is:")
		if cur == string(to) {
			// Copied again: repairs a copy an earlier call failed to make.
			return s.copyStatusOf(ctx, id)
		}
		return repermit.Errorf(repermit.ECONFLICT, "campaign %s is %s; cannot make it %s", id, cur, to)
	}
}

// copyStatusOf copies campaign id's status from home to its other shards.
func (s *Store) copyStatusOf(ctx context.Context, id string) error {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return err
	}
	return s.copyStatus(ctx, l)
}

// setStatusScript: KEYS[1] meta; ARGV[1] new status, ARGV[2..] allowed
// current statuses. The config JSON keeps its own status field out of date
// on purpose: the status field of the hash is the truth.
var setStatusScript = luaScript(`
local cur = redis.call('HGET', KEYS[1], F_STATUS)
if not cur or cur == STATUS_IMPORTING then return 'missing' end
for i = 2, #ARGV do
  if cur == ARGV[i] then
    redis.call('HSET', KEYS[1], F_STATUS, ARGV[1])
    return 'ok'
  end
end
return 'is:' .. cur
`)

// Stats is what status reports besides the campaign itself.
type Stats struct {
	Counts            repermit.Counts
	Imported          int64
	SkippedInvalid    int64
	SkippedDuplicate  int64
	SkippedSuppressed int64
	LedgerRecords     int64
	// Events is how many events the webhook outbox was given (bounces,
	// complaints, expiries, pauses; not the consent records).
	Events int64
	// Topics counts the confirmed recipients per topic they chose.
	Topics map[string]int64
	// Feedback counts bounce and complaint reports by "kind:source", e.g.
	// "bounced:dsn", "soft:dsn", "complaint:arf", "bounced:smtp"
	// (RecordFeedback).
	Feedback map[string]int64
	// Webhooks is the delivery of each webhook (by its index in the
	// campaign file) that has delivered or failed at least once.
	Webhooks map[int]WebhookState
}

// WebhookBacklog is how many events webhook i has yet to deliver:
// consent records and outbox events.
func (s Stats) WebhookBacklog(i int) int64 {
	w := s.Webhooks[i]
	return s.LedgerRecords - w.Delivered + s.Events - w.EventsDelivered
}

// Stats reads the per-state counts of a campaign in one round trip.
func (s *Store) Stats(ctx context.Context, id string) (Stats, error) {
	m, err := s.rdb.HGetAll(ctx, s.metaKey(id)).Result()
	if err != nil {
		return Stats{}, unavailable("stats "+id, err)
	}
	if st := m[fStatus]; st == "" || st == string(repermit.StatusImporting) {
		return Stats{}, repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	}
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return Stats{}, err
	}
	shards, err := s.shardMetas(ctx, l)
	if err != nil {
		return Stats{}, err
	}
	n := func(f string) int64 { v, _ := strconv.ParseInt(m[f], 10, 64); return v }
	// Counts per state and topic are the sums over the shards.
	sum := func(f string) int64 {
		t := n(f)
		for _, sm := range shards {
			v, _ := strconv.ParseInt(sm[f], 10, 64)
			t += v
		}
		return t
	}
	st := Stats{
		Counts:            make(repermit.Counts, len(repermit.States())),
		Imported:          n(fImported),
		SkippedInvalid:    n(fSkipInv),
		SkippedDuplicate:  n(fSkipDup),
		SkippedSuppressed: n(fSkipSupp),
		LedgerRecords:     n(fLedgerSeq),
		Events:            n(fEvents),
	}
	for _, state := range repermit.States() {
		st.Counts[state] = sum(fCountPfx + string(state))
	}
	for f := range m {
		if key, ok := strings.CutPrefix(f, "fb:"); ok {
			if st.Feedback == nil {
				st.Feedback = make(map[string]int64)
			}
			st.Feedback[key] = n(f)
		}
		if rest, ok := strings.CutPrefix(f, "wh:"); ok {
			i, what, _ := strings.Cut(rest, ":")
			hook, err := strconv.Atoi(i)
			if err == nil && (what == "n" || what == "en" || what == "fail") {
				if st.Webhooks == nil {
					st.Webhooks = make(map[int]WebhookState)
				}
				w := st.Webhooks[hook]
				switch what {
				case "n":
					w.Delivered = n(f)
				case "en":
					w.EventsDelivered = n(f)
				default:
					w.Failures = n(f)
				}
				st.Webhooks[hook] = w
			}
		}
		if topic, ok := strings.CutPrefix(f, fTopicPfx); ok {
			if st.Topics == nil {
				st.Topics = make(map[string]int64)
			}
			st.Topics[topic] = n(f)
		}
	}
	for _, sm := range shards {
		for f, v := range sm {
			if topic, ok := strings.CutPrefix(f, fTopicPfx); ok {
				if st.Topics == nil {
					st.Topics = make(map[string]int64)
				}
				x, _ := strconv.ParseInt(v, 10, 64)
				st.Topics[topic] += x
			}
		}
	}
	return st, nil
}

// Cursor returns a named progress cursor of a campaign (the feeder's next
// recipient index, a reminder sweep's position…).
func (s *Store) Cursor(ctx context.Context, id, name string) (int64, error) {
	v, err := s.rdb.HGet(ctx, s.metaKey(id), fCursorPfx+name).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("cursor "+id, err)
	}
	return v, nil
}

// AdvanceCursor moves a cursor from from to to, only if it still stands at
// from; it reports whether it moved, so two feeders never both advance it.
func (s *Store) AdvanceCursor(ctx context.Context, id, name string, from, to int64) (bool, error) {
	res, err := advanceCursorScript.Run(ctx, s.rdb, []string{s.metaKey(id)}, fCursorPfx+name, from, to).Int()
	if err != nil {
		return false, unavailable("cursor "+id, err)
	}
	return res == 1, nil
}

// advanceCursorScript: KEYS[1] meta; ARGV[1] field, ARGV[2] expected, ARGV[3] new.
var advanceCursorScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// Imported returns the number of recipients of a campaign, which is also
// one past the highest index.
func (s *Store) Imported(ctx context.Context, id string) (int64, error) {
	v, err := s.rdb.HGet(ctx, s.metaKey(id), fImported).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	}
	if err != nil {
		return 0, unavailable("imported "+id, err)
	}
	return v, nil
}

// Buckets returns the number of recipient buckets of a campaign.
func Buckets(imported int64) int64 { return (imported + BucketSize - 1) / BucketSize }

// Timeline returns, per state, how many recipients entered it in each
// minute (keyed by the minute's start).
func (s *Store) Timeline(ctx context.Context, id string) (map[repermit.State]map[time.Time]int64, error) {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.MapStringStringCmd, l.n)
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k := range l.n {
			cmds[k] = p.HGetAll(ctx, l.timeline(k))
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("timeline "+id, err)
	}
	out := make(map[repermit.State]map[time.Time]int64)
	for _, c := range cmds {
		addTimeline(out, c.Val())
	}
	return out, nil
}

// addTimeline adds one shard's timeline hash to out.
func addTimeline(out map[repermit.State]map[time.Time]int64, m map[string]string) {
	for k, v := range m {
		state, minute, ok := strings.Cut(k, ":")
		if !ok {
			continue
		}
		mi, err1 := strconv.ParseInt(minute, 10, 64)
		n, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		st := repermit.State(state)
		if out[st] == nil {
			out[st] = make(map[time.Time]int64)
		}
		out[st][time.Unix(mi*60, 0).UTC()] += n
	}
}

// PurgeRecipients ends a finished campaign's retention: it deletes every
// per-recipient record, confirmed addresses included, keeping the aggregate
// counts, the timeline and the consent ledger. Of a confirmed recipient it
// keeps the state, the answer and the SHA-256 of the address, never the
// address: their unsubscribe link must still work and suppress them. It
// refuses a campaign that is not finished.
func (s *Store) PurgeRecipients(ctx context.Context, id string) error {
	c, err := s.Campaign(ctx, id)
	if err != nil {
		return err
	}
	if c.Status != repermit.StatusFinished {
		return repermit.Errorf(repermit.ECONFLICT, "campaign %s is %s; only a finished campaign's records can be purged", id, c.Status)
	}
	n, err := s.Imported(ctx, id)
	if err != nil {
		return err
	}
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return err
	}
	for b := int64(0); b < Buckets(n); b++ {
		rs, err := s.Bucket(ctx, id, b)
		if err != nil {
			return err
		}
		var args []any
		for _, r := range rs {
			if r.State == repermit.StateConfirmed && r.Email != "" {
				args = append(args, strconv.FormatInt(r.Index%BucketSize, 10), keptHashPrefix+repermit.AddressHash(r.Email))
			}
		}
		if err := purgeBucketScript.Run(ctx, s.rdb, []string{l.bucket(b)}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return unavailable("purge "+id, err)
		}
	}
	if err := s.rdb.Unlink(ctx, s.softKey(id)).Err(); err != nil {
		return unavailable("purge "+id, err)
	}
	if err := s.rdb.HSet(ctx, s.metaKey(id), fPurged, time.Now().UnixMilli()).Err(); err != nil {
		return unavailable("purge "+id, err)
	}
	return nil
}

// keptHashPrefix marks a data field that holds the address's SHA-256 only.
const keptHashPrefix = "#"

// purgeBucketScript empties a bucket but for the confirmed recipients named,
// of whom it keeps state, answer and address hash. A recipient that left
// the confirmed state since the caller read it (withdrew meanwhile) is not
// kept.
//
// KEYS[1] bucket; ARGV pairs: slot, kept data ("#" + sha256 hex).
var purgeBucketScript = luaScript(`
local keep = {}
for i = 1, #ARGV, 2 do
  local slot = ARGV[i]
  if redis.call('HGET', KEYS[1], 's' .. slot) == CODE_CONFIRMED then
    table.insert(keep, 's' .. slot)
    table.insert(keep, CODE_CONFIRMED)
    table.insert(keep, 'd' .. slot)
    table.insert(keep, ARGV[i + 1])
    local a = redis.call('HGET', KEYS[1], 'a' .. slot)
    if a then
      table.insert(keep, 'a' .. slot)
      table.insert(keep, a)
    end
  end
end
redis.call('UNLINK', KEYS[1])
if #keep > 0 then redis.call('HSET', KEYS[1], unpack(keep)) end
return #keep
`)
