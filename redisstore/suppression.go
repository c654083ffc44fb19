package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The global suppression list is kept in two parts (P the key prefix):
//
//	P:sup:{hhhh}        hash  membership: the SHA-256's first four hex digits
//	                          name the key (65,536 keys, each its own hash
//	                          slot, so a cluster spreads them); the field is
//	                          the next 12 bytes of the hash in binary, the
//	                          value the reason's first letter. 1M addresses
//	                          put 15 in a key, 30M still fewer than 512, so
//	                          every key stays a small listpack.
//	P:{ID}:suplog:bN    hash  what campaign ID put on the list of bucket
//	                          N's recipients, for its export: the full
//	                          SHA-256 in binary -> the reason's first
//	                          letter and unix seconds (5 bytes); in the
//	                          bucket's shard, at most 128 entries.
//	P:{ID}:suplog:hhh   hash  the same for hashes put there not as a
//	                          recipient (AddSuppression: a campaign's
//	                          suppression file, complaints by hash) and
//	                          for everything of campaigns before the
//	                          bucket parts; 4,096 keys by the hash's first
//	                          three hex digits.
//
// The log used to be only the 4,096 parts by hash. An expiry then wrote
// its 128 entries into 128 of them, and on a campaign of 1M each held
// about 250: each HSET scanned a listpack of that size, 2.7 us a field in
// Redis, more than the expiry's own script per recipient. A bucket's
// entries now go to one key in one HSET.
//
// A lookup compares 128 bits of the hash (16 in the key, 112 in the field):
// among 100 million suppressed addresses the chance that an address not on
// the list matches one is about 10^-26.
//
// The list before this layout, one hash P:suppression of full hashes, is
// read by IsSuppressed until MigrateSuppression has moved it.

const (
	supFieldFrom = 4    // hex digits in the key
	supFieldTo   = 28   // hex digits of the hash in key and field together
	supLogDigits = 3    // hex digits naming a campaign's log key
	supLogKeys   = 4096 // 16^supLogDigits
)

func (s *Store) legacySuppressionKey() string { return s.prefix + ":suppression" }

// suppressionSlot returns the membership key and field of an address hash.
// Anything but a SHA-256 in hex (64 hex digits) is hashed first, so that
// every string has its place.
func (s *Store) suppressionSlot(h string) (key, field string) {
	h = sha256Hex(h)
	f, _ := hex.DecodeString(h[supFieldFrom:supFieldTo])
	return s.prefix + ":sup:{" + h[:supFieldFrom] + "}", string(f)
}

// sha256Hex returns h in lower case when it is a SHA-256 in hex, else the
// SHA-256 of h.
func sha256Hex(h string) string {
	if len(h) == 64 {
		if raw, err := hex.DecodeString(h); err == nil {
			return hex.EncodeToString(raw)
		}
	}
	sum := sha256.Sum256([]byte(h))
	return hex.EncodeToString(sum[:])
}

// supLogKey is the log key of hash h in the campaign of layout l; the
// 4,096 keys are spread over its shards (layout.supLog).
func supLogKey(l layout, h string) string {
	return l.supLog(sha256Hex(h)[:supLogDigits])
}

// supLogEntry returns the log's field (the binary hash) and value (reason
// letter, unix seconds).
func supLogEntry(h, reason string, at time.Time) (field, value string) {
	raw, _ := hex.DecodeString(sha256Hex(h))
	r := byte('?')
	if reason != "" {
		r = reason[0]
	}
	v := binary.BigEndian.AppendUint32([]byte{r}, uint32(max(0, at.Unix())))
	return string(raw), string(v)
}

var reasonsByLetter = map[byte]string{
	'e': ReasonExpired, 'd': ReasonDeclined, 'b': ReasonBounced, 'u': ReasonUnsubscribed, 'i': ReasonImported,
}

// IsSuppressed reports for each address hash whether it is on the global
// suppression list, in one round trip.
func (s *Store) IsSuppressed(ctx context.Context, hashes []string) ([]bool, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	keys := make([]string, len(hashes))
	fields := make([]string, len(hashes))
	for i, h := range hashes {
		keys[i], fields[i] = s.suppressionSlot(h)
	}
	cmds := make([]*redis.BoolCmd, len(hashes))
	var legacy *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range hashes {
			cmds[i] = p.HExists(ctx, keys[i], fields[i])
		}
		legacy = p.HMGet(ctx, s.legacySuppressionKey(), hashes...)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("suppression lookup", err)
	}
	old := legacy.Val()
	out := make([]bool, len(hashes))
	for i, c := range cmds {
		out[i] = c.Val() || (i < len(old) && old[i] != nil)
	}
	return out, nil
}

// AddSuppression puts address hashes on the global suppression list, in
// campaign's name.
func (s *Store) AddSuppression(ctx context.Context, reason, campaign string, now time.Time, hashes ...string) error {
	entries := make([]suppression, len(hashes))
	for i, h := range hashes {
		entries[i] = suppression{hash: h, reason: reason, at: now, campaign: campaign, recipient: -1}
	}
	if err := s.suppress(ctx, entries); err != nil {
		return unavailable("suppress", err)
	}
	return nil
}

type suppression struct {
	hash, reason, campaign string
	at                     time.Time
	// recipient is the index of the campaign's recipient the entry is
	// of, or -1: a hash put on the list by itself, or an outbox entry of
	// before the index was written into it.
	recipient int64
}

// suppress writes entries to the membership keys and their campaigns'
// logs in one pipeline. Repeating it is harmless: both are keyed by hash.
func (s *Store) suppress(ctx context.Context, entries []suppression) error {
	if len(entries) == 0 {
		return nil
	}
	lays := make(map[string]layout)
	for _, e := range entries {
		if _, ok := lays[e.campaign]; !ok {
			l, err := s.layoutOf(ctx, e.campaign)
			if err != nil {
				return err
			}
			lays[e.campaign] = l
		}
	}
	// A campaign's entries of one bucket (an expiry's 128) are one HSET.
	type part struct {
		campaign string
		bucket   int64
	}
	byBucket := make(map[part][]any)
	var parts []part // in order of first entry
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			key, field := s.suppressionSlot(e.hash)
			logField, logValue := supLogEntry(e.hash, e.reason, e.at)
			letter := "?"
			if e.reason != "" {
				letter = e.reason[:1]
			}
			p.HSet(ctx, key, field, letter)
			if e.recipient < 0 {
				p.HSet(ctx, supLogKey(lays[e.campaign], e.hash), logField, logValue)
				continue
			}
			k := part{e.campaign, e.recipient / BucketSize}
			if _, ok := byBucket[k]; !ok {
				parts = append(parts, k)
			}
			byBucket[k] = append(byBucket[k], logField, logValue)
		}
		for _, k := range parts {
			p.HSet(ctx, lays[k.campaign].supLogOfBucket(k.bucket), byBucket[k]...)
		}
		return nil
	})
	return err
}

// SuppressionEntry is one hash on the global suppression list.
type SuppressionEntry struct {
	Hash     string
	Reason   string
	At       time.Time
	Campaign string
}

// Suppressions calls fn for every global suppression entry that campaign
// id put there (all campaigns' when id is ""; that one scans the keys).
// It reads 4,096 keys a campaign, 256 to a round trip.
func (s *Store) Suppressions(ctx context.Context, id string, fn func(SuppressionEntry) error) error {
	if id == "" {
		var ids []string
		seen := make(map[string]bool)
		err := s.forEachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
			return scanKeys(ctx, node, s.prefix+":{*}:suplog:*", func(keys []string) error {
				for _, k := range keys {
					rest := strings.TrimPrefix(k, s.prefix+":{")
					c, _, ok := strings.Cut(rest, "}:suplog:")
					// A shard's tag is {ID:k}; the campaign is ID.
					c, _, _ = strings.Cut(c, ":")
					if ok && !seen[c] {
						seen[c] = true
						ids = append(ids, c)
					}
				}
				return nil
			})
		})
		if err != nil {
			return unavailable("suppression list", err)
		}
		for _, c := range ids {
			if err := s.Suppressions(ctx, c, fn); err != nil {
				return err
			}
		}
		return nil
	}
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return err
	}
	for start := 0; start < supLogKeys; start += 256 {
		cmds := make([]*redis.MapStringStringCmd, 0, 256)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < start+256; i++ {
				cmds = append(cmds, p.HGetAll(ctx, l.supLog(fmt.Sprintf("%03x", i))))
			}
			return nil
		})
		if err != nil {
			return unavailable("suppression list of "+id, err)
		}
		if err := eachLogEntry(id, cmds, fn); err != nil {
			return err
		}
	}
	buckets, err := s.rdb.HGet(ctx, l.meta(0), fHighWater).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("suppression list of "+id, err)
	}
	for start := int64(0); start < buckets; start += 256 {
		cmds := make([]*redis.MapStringStringCmd, 0, 256)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for b := start; b < min(buckets, start+256); b++ {
				cmds = append(cmds, p.HGetAll(ctx, l.supLogOfBucket(b)))
			}
			return nil
		})
		if err != nil {
			return unavailable("suppression list of "+id, err)
		}
		if err := eachLogEntry(id, cmds, fn); err != nil {
			return err
		}
	}
	return nil
}

func eachLogEntry(id string, cmds []*redis.MapStringStringCmd, fn func(SuppressionEntry) error) error {
	for _, c := range cmds {
		for f, v := range c.Val() {
			if len(f) != 32 || len(v) != 5 {
				continue
			}
			e := SuppressionEntry{Hash: hex.EncodeToString([]byte(f)), Reason: reasonsByLetter[v[0]], Campaign: id,
				At: time.Unix(int64(binary.BigEndian.Uint32([]byte(v[1:]))), 0)}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// DrainSuppression copies a campaign's queued suppression entries to the
// global list, then removes them from the queue. Copying is idempotent, so
// a crash between the two steps only repeats the copy. Of a campaign of
// several shards it drains every shard, and also takes the consent
// records and events its shards queued to the log and the outbox
// (drainQueues).
func (s *Store) DrainSuppression(ctx context.Context, id string) error {
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return err
	}
	for k := range l.n {
		if err := s.drainSuppression(ctx, l, k); err != nil {
			return err
		}
	}
	return s.drainQueues(ctx, l)
}

// drainSuppression is DrainSuppression of shard k's outbox.
func (s *Store) drainSuppression(ctx context.Context, l layout, k int64) error {
	id, key := l.id, l.supp(k)
	for {
		raw, err := s.rdb.SRandMemberN(ctx, key, 1000).Result()
		if err != nil {
			return unavailable("drain suppression "+id, err)
		}
		if len(raw) == 0 {
			return nil
		}
		entries := make([]suppression, 0, len(raw))
		for _, e := range raw {
			entries = append(entries, parseSuppression(e))
		}
		if err := s.suppress(ctx, entries); err != nil {
			return unavailable("drain suppression "+id, err)
		}
		members := make([]any, len(raw))
		for i, e := range raw {
			members[i] = e
		}
		if err := s.rdb.SRem(ctx, key, members...).Err(); err != nil {
			return unavailable("drain suppression "+id, err)
		}
	}
}

// settleSuppression writes entries a transition just queued in campaign
// id's outbox to the global list, then removes them from the outbox (two
// round trips per call, none per entry), so that the expiry does not grow the outbox to the size of
// the campaign and then read it back (DrainSuppression's SRANDMEMBER on a
// set of a million members cost as much as the expiry itself). A failure
// is not an error: the entries stay in the outbox, and DrainSuppression,
// which the expiry runs before it finishes the campaign, writes them.
func (s *Store) settleSuppression(ctx context.Context, outbox string, entries []string) {
	if len(entries) == 0 {
		return
	}
	members := make([]any, len(entries))
	for i, e := range entries {
		members[i] = e
	}
	// Only once the list holds them may they leave the outbox: a failed
	// HSET in the same pipeline would not stop the SREM after it.
	if err := s.suppressRaw(ctx, entries); err != nil {
		return
	}
	s.rdb.SRem(ctx, outbox, members...)
}

// suppressRaw writes outbox entries ("hash|reason|unix ms|campaign") to
// the global list.
func (s *Store) suppressRaw(ctx context.Context, raw []string) error {
	entries := make([]suppression, len(raw))
	for i, e := range raw {
		entries[i] = parseSuppression(e)
	}
	return s.suppress(ctx, entries)
}

// parseSuppression reads "hash|reason|unix ms|campaign|recipient" (an
// outbox entry; entries queued before the recipient's index was added end
// at the campaign, and a legacy list's value is the same without the
// hash).
func parseSuppression(v string) suppression {
	parts := strings.SplitN(v, "|", 5)
	e := suppression{hash: parts[0], recipient: -1}
	if len(parts) > 1 {
		e.reason = parts[1]
	}
	if len(parts) > 2 {
		e.at = parseMs(parts[2])
	}
	if len(parts) > 3 {
		e.campaign = parts[3]
	}
	if len(parts) > 4 {
		if i, err := strconv.ParseInt(parts[4], 10, 64); err == nil && i >= 0 {
			e.recipient = i
		}
	}
	return e
}

// MigrateSuppression moves the suppression list of the layout before
// P:sup:{…} (one hash P:suppression) into the current one, a thousand
// entries at a time, each batch written before it is deleted from the old
// hash, so it can be interrupted and run again. It returns how many
// entries it moved.
func (s *Store) MigrateSuppression(ctx context.Context) (int64, error) {
	var moved int64
	old := s.legacySuppressionKey()
	var cursor uint64
	for {
		kv, next, err := s.rdb.HScan(ctx, old, cursor, "", 1000).Result()
		if err != nil {
			return moved, unavailable("migrate suppression", err)
		}
		cursor = next
		if len(kv) == 0 {
			if cursor != 0 {
				continue
			}
			n, err := s.rdb.HLen(ctx, old).Result()
			if err != nil {
				return moved, unavailable("migrate suppression", err)
			}
			if n == 0 {
				return moved, nil
			}
			continue // a full pass done, entries left: another pass
		}
		entries := make([]suppression, 0, len(kv)/2)
		fields := make([]string, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			entries = append(entries, parseSuppression(kv[i]+"|"+kv[i+1]))
			fields = append(fields, kv[i])
		}
		if err := s.suppress(ctx, entries); err != nil {
			return moved, unavailable("migrate suppression", err)
		}
		if err := s.rdb.HDel(ctx, old, fields...).Err(); err != nil {
			return moved, unavailable("migrate suppression", err)
		}
		moved += int64(len(fields))
	}
}
