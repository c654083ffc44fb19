package web

import (
	"sync"
	"time"

	"github.com/repermit/repermit"
)

// landedCache keeps, for a few minutes, the recipients whose landing page
// this process showed, so that the answer posted from the page needs no
// read of its own: the read was a round trip to Redis before the answer's
// write, about a quarter of a confirmation's time in `bench web`. The
// store writes such an answer only if the recipient is still at the
// revision the page was made from, and else reads the recipient again
// (redisstore.Answer.Current), so a stale entry costs a read, never a
// wrong record.
//
// Only unanswered recipients are kept. A confirmed recipient's answer may
// be a replay, which Record judges from the recipient it is given without
// a write, and so without the check; an answered page's POST reads.
//
// An answer posted to another process than the one that showed its page
// reads, as every answer did before.
//
// An entry keeps only what an answer needs: the address (the record's
// subject, the suppression entry), the locale of the pages, the state and
// the revision; not the name or the extra columns. It goes with the
// answer, and after the TTL otherwise. Each entry is one string, not a
// Recipient of a dozen objects: kept Recipients doubled the garbage
// collector's marking during `bench web` and cost the landing pages 5–10
// µs of CPU each.
type landedCache struct {
	ttl time.Duration
	now func() time.Time // wall clock for the TTL, not Config.Now

	mu sync.Mutex
	m  map[landedKey]landedEntry
	// fifo holds the keys in the order they were put, oldest first from
	// head, for eviction; a key put again is found by its until.
	fifo []landedAt
	head int
}

type landedKey struct {
	campaign string
	index    int64
}

type landedEntry struct {
	// row is the address, its hash, the locale and the revision, one
	// after the other; email, hash and locale are where each ends.
	row                 string
	email, hash, locale int
	state               repermit.State
	step                int
	until               int64 // unix ns
}

type landedAt struct {
	key   landedKey
	until int64
}

// maxLanded bounds the entries: ten minutes of landing pages at 50 a
// second, in about 10 MB (a full cache of addresses of 30 bytes held 291
// bytes of heap an entry, map and fifo included).
const maxLanded = 1 << 15

func newLandedCache(ttl time.Duration) *landedCache {
	return &landedCache{ttl: ttl, now: time.Now, m: make(map[landedKey]landedEntry)}
}

// put keeps r, the recipient a landing page was just made from.
func (lc *landedCache) put(r *repermit.Recipient) {
	if lc.ttl <= 0 || r.Revision == "" || (r.State != repermit.StatePending && r.State != repermit.StateSent) {
		return
	}
	now := lc.now().UnixNano()
	e := landedEntry{row: r.Email + r.AddressHash + r.Locale + r.Revision, state: r.State, step: r.Step, until: now + int64(lc.ttl)}
	e.email = len(r.Email)
	e.hash = e.email + len(r.AddressHash)
	e.locale = e.hash + len(r.Locale)
	k := landedKey{r.Campaign, r.Index}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.evict(now)
	lc.m[k] = e
	lc.fifo = append(lc.fifo, landedAt{k, e.until})
}

// take returns the recipient of campaign id's index idx kept by put, with
// what an answer needs of it (no name, no extra columns), and forgets it;
// nil when none is kept or it is too old.
func (lc *landedCache) take(id string, idx int64) *repermit.Recipient {
	if lc.ttl <= 0 {
		return nil
	}
	k := landedKey{id, idx}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	e, ok := lc.m[k]
	if !ok {
		return nil
	}
	delete(lc.m, k)
	if lc.now().UnixNano() >= e.until {
		return nil
	}
	return &repermit.Recipient{
		Campaign: id, Index: idx, State: e.state, Step: e.step,
		Email: e.row[:e.email], AddressHash: e.row[e.email:e.hash], Locale: e.row[e.hash:e.locale], Revision: e.row[e.locale:],
	}
}

// evict drops the entries past their TTL and, while the cache is full,
// the oldest. Called with mu held.
func (lc *landedCache) evict(now int64) {
	for lc.head < len(lc.fifo) {
		a := lc.fifo[lc.head]
		if now < a.until && len(lc.m) < maxLanded && len(lc.fifo)-lc.head < 2*maxLanded {
			break
		}
		if e, ok := lc.m[a.key]; ok && e.until == a.until {
			delete(lc.m, a.key)
		}
		lc.fifo[lc.head] = landedAt{}
		lc.head++
	}
	if lc.head > len(lc.fifo)/2 {
		lc.fifo = append(lc.fifo[:0], lc.fifo[lc.head:]...)
		lc.head = 0
	}
}
