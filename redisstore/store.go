// Package redisstore keeps campaigns, recipients, the suppression list and
// the consent ledger in Redis. It is the only package that builds a key or
// runs a script; everything else goes through its methods.
//
// Layout (P is the key prefix, ID a campaign id; every key of one campaign
// carries the {ID} hash tag so that multi-key scripts work on Redis Cluster):
//
//	P:campaigns          zset  committed campaign ids, scored by creation time
//	P:seq                string counter handing out campaign sequence numbers
//	P:seqs               hash  seq -> campaign id (tokens carry the seq)
//	P:sup:{hhhh}         hash  the global suppression list, 65,536 keys by
//	                           hash prefix (see suppression.go)
//	P:{ID}:meta          hash  config, status, counts per state, cursors, ledger head
//	P:{ID}:b:N           hash  recipients N*128 … N*128+127, three fields each:
//	                           s<slot> state code, d<slot> data, a<slot> answer
//	P:{ID}:supp          set   suppression entries waiting to be copied to
//	                           P:sup:{…} (an outbox: the global list lives in
//	                           other slots, so a script cannot write it)
//	P:{ID}:suplog:bN     hash  what the campaign suppressed of bucket N's
//	                           recipients, for its export (suppression.go)
//	P:{ID}:suplog:hhh    hash  the same for hashes suppressed by themselves,
//	                           4,096 keys by hash prefix
//	P:{ID}:ledger        stream consent records, the leaves of the consent log
//	                           (campaigns launched before it: a hash chain)
//	P:{ID}:tree          list  the log's stored hashes (tlog.StoredHashIndex order)
//	P:{ID}:cp            list  signed checkpoints, oldest first
//	P:{ID}:wording       hash  sha256 -> page wording shown to those who answered,
//	                           and mail wording (template with placeholders) sent
//	P:{ID}:mailwording   hash  "<step>/<a|n>/<locale>" -> sha256 of the mail
//	                           wording of that kind sent to that locale
//	P:subjectkey         string the deployment's key of the address hashes in the log
//	P:{ID}:timeline      hash  "<state>:<unix minute>" -> recipients that
//	                           entered the state in that minute
//	P:{ID}:fb:seen       set   keys of bounce and complaint reports already
//	                           counted (RecordFeedback), so each counts once
//	P:{ID}:fb:soft       hash  recipient index -> soft bounces reported
//
// A campaign of N>1 shards keeps buckets, counts, suppression outbox and
// timeline of shard k>0 under the tag {ID:k} instead (shard.go).
//
// Recipients are packed 128 to a hash, each row in the compact binary
// encoding of row.go, so that Redis keeps every bucket a listpack even on
// lists with names: 96.8 bytes a recipient on bench's realistic shape
// (README, Performance), against 183 when rows were text and a quarter of
// them outgrew hash-max-listpack-value.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// BucketSize is the number of recipients packed into one Redis hash. With
// three fields each it stays below Redis' default hash-max-listpack-entries
// of 512.
const BucketSize = 128

// Sentinel errors of state changes; callers branch on them.
var (
	// ErrNotRunning: the campaign is paused, cancelled or finished, so no
	// mail may be claimed.
	ErrNotRunning = errors.New("campaign not running")
	// ErrNotAllowed: the recipient's state does not allow the change, e.g. a
	// second claim of a step already mailed, or an answer after expiry.
	ErrNotAllowed = errors.New("state does not allow this change")
	// ErrBusy: another worker holds the lease on this recipient's mail.
	ErrBusy = errors.New("recipient is being mailed by another worker")
)

// Store is safe for concurrent use.
type Store struct {
	rdb        redis.UniversalClient
	ownsClient bool   // Close closes rdb (Open made it)
	addr       string // Addr's answer when Open made the client
	prefix     string
	ledger     ledgerQueues
	reads      readQueue // recipient reads, sent together under load
	subject    subjectKeyCache
	wordings   sync.Map // campaign "\x00" sha256 -> struct{}: wordings known kept

	limiterOnce sync.Once
	limiter     *redis_rate.Limiter
	inspectOnce sync.Once
	inspect     *asynq.Inspector

	cols   columnCache // each campaign's extra column names, see row.go
	shards shardCache  // each campaign's number of shards, see shard.go

	// transitionScript is built from repermit's state tables by New.
	transitionScript *redis.Script
}

// New returns a store that keeps its keys under prefix (e.g. "repermit";
// tests use a unique prefix each).
func New(rdb redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = "repermit"
	}
	return &Store{rdb: rdb, prefix: prefix, transitionScript: newTransitionScript(repermit.Stages(), repermit.Transitions())}
}

// Prefix returns the key prefix.
func (s *Store) Prefix() string { return s.prefix }

func (s *Store) campaignsKey() string     { return s.prefix + ":campaigns" }
func (s *Store) seqKey() string           { return s.prefix + ":seq" }
func (s *Store) seqsKey() string          { return s.prefix + ":seqs" }
func (s *Store) metaKey(id string) string { return s.home(id).meta(0) }

// home is the layout of shard 0, the campaign's home (shard.go), for the
// keys that live there whatever the number of shards.
func (s *Store) home(id string) layout { return layout{prefix: s.prefix, id: id, n: 1} }

func (s *Store) ledgerKey(id string) string { return s.home(id).ledgerQ(0) }

// eventsKey is the campaign's webhook outbox (events.go).
func (s *Store) eventsKey(id string) string { return s.home(id).eventsQ(0) }

// Meta hash fields.
const (
	fConfig     = "cfg"
	fStatus     = "status"
	fSeq        = "seq"
	fDeadline   = "deadline_ms"
	fImported   = "imported"
	fSkipInv    = "skipped_invalid"
	fSkipDup    = "skipped_duplicate"
	fSkipSupp   = "skipped_suppressed"
	fHighWater  = "buckets"
	fHeartbeat  = "heartbeat_ms"
	fLedgerHead = "lhead"
	fLedgerSeq  = "lseq"
	fLedgerKind = "lkind" // ledgerKindLog for campaigns launched with the consent log
	fCountPfx   = "n:"
	fCursorPfx  = "cursor:"
	fTopicPfx   = "topic:"
	fPausedBy   = "pause_reason"
	fPurged     = "purged_ms"
	fColumns    = "cols" // JSON list of the extra columns' names, see row.go
	fEventsOn   = "evq"  // "1": the campaign has webhooks, its scripts write the outbox (events.go)
	fEvents     = "evn"  // events written to the outbox so far
)

func unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, &wrapped{code: repermit.EUNAVAILABLE, err: err})
}

// wrapped gives a Redis failure the EUNAVAILABLE code while keeping the
// cause in the chain for logs.
type wrapped struct {
	code string
	err  error
}

func (w *wrapped) Error() string { return "redis: " + w.err.Error() }
func (w *wrapped) Unwrap() []error {
	return []error{&repermit.Error{Code: w.code, Message: "the database is not answering, try again shortly"}, w.err}
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

func bucketOf(idx int64) (bucket int64, slot string) {
	return idx / BucketSize, strconv.FormatInt(idx%BucketSize, 10)
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func parseMs(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// The text rows written before encodeRow hold email, name, locale, then
// key=value per extra column, separated by the ASCII unit separator
// (0x1f); inside a field the record separator (0x1e) escaped the unit
// separator ("\x1e_"), itself ("\x1e\x1e") and, in a column name, '='
// ("\x1e-").

// unescaped maps the byte after an escape to the byte it stands for.
var unescaped = map[byte]byte{0x1e: 0x1e, '_': 0x1f, '-': '='}

// unescapeField undoes the escapes of a text row's field.
func unescapeField(s string) string {
	if !strings.Contains(s, "\x1e") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0x1e && i+1 < len(s) {
			if u, ok := unescaped[s[i+1]]; ok {
				c = u
				i++
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// decodeText decodes a text row (campaigns launched before the binary rows
// of row.go).
func decodeText(r *repermit.Recipient, v string) {
	parts := strings.Split(v, "\x1f")
	r.Email = unescapeField(parts[0])
	if len(parts) > 1 {
		r.Name = unescapeField(parts[1])
	}
	if len(parts) > 2 {
		r.Locale = unescapeField(parts[2])
	}
	for _, kv := range parts[min(3, len(parts)):] {
		// An escaped column name holds no '=': the first one ends it.
		k, v, _ := strings.Cut(kv, "=")
		if r.Extra == nil {
			r.Extra = make(map[string]string)
		}
		r.Extra[unescapeField(k)] = unescapeField(v)
	}
}
