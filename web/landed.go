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
// answer, and after the TTL otherwise.
//
// Entries hold no pointers, so the garbage collector never scans the
// cache. Kept as Recipients, they doubled its marking during `bench web`
// and cost each landing page 5–10 µs of CPU; as strings, still about 4.
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

// landedKey is a campaign's sequence number (the one its tokens carry) and
// a recipient's index.
type landedKey uint64

func keyOf(seq uint32, idx uint32) landedKey { return landedKey(seq)<<32 | landedKey(idx) }

// maxLandedRow bounds the bytes of an entry's address, locale and
// revision; a recipient with more is not kept, and its answer reads.
const maxLandedRow = 120

type landedEntry struct {
	// row holds the address, its hash, the locale and the revision, one
	// after the other; email, hash, locale and end are where each ends.
	row                      [maxLandedRow]byte
	email, hash, locale, end uint8
	sent                     bool // else pending
	step                     int32
	until                    int64 // unix ns
}

type landedAt struct {
	key   landedKey
	until int64
}

// maxLanded bounds the entries: ten minutes of landing pages at 50 a
// second, in about 6.5 MB (a full cache held 197 bytes of heap an entry,
// map and fifo included).
const maxLanded = 1 << 15

func newLandedCache(ttl time.Duration) *landedCache {
	return &landedCache{ttl: ttl, now: time.Now, m: make(map[landedKey]landedEntry)}
}

// put keeps r, the recipient a landing page was just made from, under its
// campaign's sequence number seq.
func (lc *landedCache) put(seq uint32, r *repermit.Recipient) {
	if lc.ttl <= 0 || r.Revision == "" || (r.State != repermit.StatePending && r.State != repermit.StateSent) ||
		r.Index < 0 || r.Index > 1<<32-1 ||
		len(r.Email)+len(r.AddressHash)+len(r.Locale)+len(r.Revision) > maxLandedRow {
		return
	}
	now := lc.now().UnixNano()
	e := landedEntry{sent: r.State == repermit.StateSent, step: int32(r.Step), until: now + int64(lc.ttl)}
	n := copy(e.row[:], r.Email)
	e.email = uint8(n)
	n += copy(e.row[n:], r.AddressHash)
	e.hash = uint8(n)
	n += copy(e.row[n:], r.Locale)
	e.locale = uint8(n)
	n += copy(e.row[n:], r.Revision)
	e.end = uint8(n)
	k := keyOf(seq, uint32(r.Index))
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.evict(now)
	lc.m[k] = e
	lc.fifo = append(lc.fifo, landedAt{k, e.until})
}

// take returns the recipient idx of campaign id, sequence number seq,
// kept by put, with what an answer needs of it (no name, no extra
// columns), and forgets it; nil when none is kept or it is too old.
func (lc *landedCache) take(seq uint32, id string, idx uint32) *repermit.Recipient {
	if lc.ttl <= 0 {
		return nil
	}
	k := keyOf(seq, idx)
	lc.mu.Lock()
	e, ok := lc.m[k]
	if ok {
		delete(lc.m, k)
	}
	lc.mu.Unlock()
	if !ok || lc.now().UnixNano() >= e.until {
		return nil
	}
	row := string(e.row[:e.end])
	r := &repermit.Recipient{
		Campaign: id, Index: int64(idx), State: repermit.StatePending, Step: int(e.step),
		Email: row[:e.email], AddressHash: row[e.email:e.hash], Locale: row[e.hash:e.locale], Revision: row[e.locale:],
	}
	if e.sent {
		r.State = repermit.StateSent
	}
	return r
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
		lc.head++
	}
	if lc.head > len(lc.fifo)/2 {
		lc.fifo = append(lc.fifo[:0], lc.fifo[lc.head:]...)
		lc.head = 0
	}
}
