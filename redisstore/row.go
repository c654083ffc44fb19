package redisstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// A recipient's personal data is one binary value (rowVersion, then
// length-prefixed fields), split over several hash fields when it is long:
//
//	d<slot>  the first maxPacked bytes
//	e<slot>, f<slot>, g<slot>  the next maxPacked bytes each, only as many
//	         as the row needs; g holds all that is left
//
// Redis keeps a hash as a compact listpack only while every value is at
// most hash-max-listpack-value (64) bytes and it has at most
// hash-max-listpack-entries (512) fields; a bucket holds 128 recipients of
// three fields each (s, d, a) and room for 128 continuations, so it stays a
// listpack unless its rows are longer than 256 packed bytes or a third of
// them longer than 64. The value itself is made short: the domain of the
// address and the locale are one byte when they are on a built-in list of
// common ones, and an extra column is named by its number in the
// campaign's column list (meta field "cols") instead of its name.
//
//	0x01                       rowVersion
//	domain code                1 byte: 0 literal, else commonDomains[code-1]
//	uvarint len, local part    the address before '@' (or all of it without '@')
//	[uvarint len, domain]      when the code is 0
//	locale code                1 byte: 0 none, 0xff literal, else commonLocales[code-1]
//	[uvarint len, locale]      when the code is 0xff
//	uvarint len, name
//	then per extra column: uvarint column number, uvarint len, value
//
// Values written before this encoding (text with 0x1f separators, see
// decodeText) still decode.
const (
	rowVersion = 0x01
	maxPacked  = 64
)

// commonDomains are mailbox providers common on European and American
// lists. Append only: a row names a domain by its position.
var commonDomains = []string{
	"gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "msn.com",
	"icloud.com", "me.com", "mac.com", "aol.com", "protonmail.com", "proton.me", "ymail.com",
	"gmx.de", "gmx.net", "gmx.at", "gmx.ch", "gmx.com", "web.de", "t-online.de", "freenet.de",
	"arcor.de", "online.de", "posteo.de", "mailbox.org", "yahoo.de", "hotmail.de", "outlook.de", "live.de",
	"aon.at", "bluewin.ch", "yahoo.co.uk", "hotmail.co.uk", "btinternet.com", "sky.com",
	"orange.fr", "free.fr", "wanadoo.fr", "laposte.net", "sfr.fr", "yahoo.fr", "hotmail.fr", "outlook.fr",
	"libero.it", "virgilio.it", "tiscali.it", "alice.it", "yahoo.it", "hotmail.it",
	"yahoo.es", "hotmail.es", "outlook.es", "telenet.be", "skynet.be", "ziggo.nl", "kpnmail.nl", "hetnet.nl",
	"live.nl", "hotmail.nl", "jubii.dk", "live.dk", "hotmail.dk", "telia.com", "live.se", "hotmail.se",
	"online.no", "wp.pl", "o2.pl", "interia.pl", "onet.pl", "seznam.cz", "mail.ru", "yandex.ru",
	"comcast.net", "verizon.net", "att.net", "sbcglobal.net", "mail.com", "zoho.com", "qq.com", "163.com",
}

// commonLocales, append only like commonDomains.
var commonLocales = []string{
	"en", "de", "fr", "es", "it", "nl", "da", "sv", "pl", "pt", "fi", "nb", "cs",
	"de-AT", "de-CH", "en-GB", "en-US", "fr-BE", "fr-CH", "nl-BE", "it-CH", "pt-BR", "es-MX",
}

var (
	domainCodes = codes(commonDomains)
	localeCodes = codes(commonLocales)
)

func codes(list []string) map[string]byte {
	m := make(map[string]byte, len(list))
	for i, v := range list {
		m[v] = byte(i + 1)
	}
	return m
}

// columnIndex numbers a campaign's extra columns in order of appearance.
type columnIndex struct {
	names []string
	num   map[string]int
}

func (c *columnIndex) number(name string) int {
	if n, ok := c.num[name]; ok {
		return n
	}
	if c.num == nil {
		c.num = make(map[string]int)
	}
	c.num[name] = len(c.names)
	c.names = append(c.names, name)
	return c.num[name]
}

// encodeRow packs a recipient's data (see the layout above); cols numbers
// the extra columns and learns new ones.
func encodeRow(email, name, locale string, extra map[string]string, cols *columnIndex) []byte {
	b := make([]byte, 0, 1+len(email)+len(name)+len(locale)+8+16*len(extra))
	b = append(b, rowVersion)
	local, domain, ok := strings.Cut(email, "@")
	code := domainCodes[domain]
	if !ok {
		local, domain, code = email, "", 0
	}
	b = append(b, code)
	b = appendString(b, local)
	if code == 0 {
		if ok {
			b = appendString(b, "@"+domain)
		} else {
			b = appendString(b, "")
		}
	}
	switch lc, known := localeCodes[locale]; {
	case locale == "":
		b = append(b, 0)
	case known:
		b = append(b, lc)
	default:
		b = append(b, 0xff)
		b = appendString(b, locale)
	}
	b = appendString(b, name)
	if len(extra) > 0 {
		// Column order, so that equal rows pack equally.
		nums := make([]int, 0, len(extra))
		vals := make(map[int]string, len(extra))
		for k, v := range extra {
			n := cols.number(k)
			nums = append(nums, n)
			vals[n] = v
		}
		sortInts(nums)
		for _, n := range nums {
			b = binary.AppendUvarint(b, uint64(n))
			b = appendString(b, vals[n])
		}
	}
	return b
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// chunkFields name the values of a packed row after the first (d).
var chunkFields = []string{"e", "f", "g"}

// rowFields returns the field-value pairs of a packed row for slot.
func rowFields(slot string, b []byte) []any {
	out := make([]any, 0, 8)
	out = append(out, "d"+slot, string(b[:min(len(b), maxPacked)]))
	b = b[min(len(b), maxPacked):]
	for i, f := range chunkFields {
		if len(b) == 0 {
			break
		}
		n := min(len(b), maxPacked)
		if i == len(chunkFields)-1 {
			n = len(b)
		}
		out = append(out, f+slot, string(b[:n]))
		b = b[n:]
	}
	return out
}

// dataFields are the fields that hold slot's packed row, in order.
func dataFields(slot string) []string {
	return []string{"d" + slot, "e" + slot, "f" + slot, "g" + slot}
}

var errBadRow = errors.New("malformed recipient data")

// errColumn: the row names a column the caller's list does not have yet.
type errColumn struct{ n uint64 }

func (e errColumn) Error() string { return fmt.Sprintf("unknown column %d", e.n) }

// decodeRow fills r from a packed value (d and e joined). cols is the
// campaign's column list.
func decodeRow(r *repermit.Recipient, v string, cols []string) error {
	if h, ok := strings.CutPrefix(v, keptHashPrefix); ok {
		r.AddressHash = h
		return nil
	}
	if v == "" || v[0] != rowVersion {
		decodeText(r, v)
		return nil
	}
	p := []byte(v[1:])
	next := func() (string, error) {
		n, k := binary.Uvarint(p)
		if k <= 0 || uint64(len(p)-k) < n {
			return "", errBadRow
		}
		s := string(p[k : k+int(n)])
		p = p[k+int(n):]
		return s, nil
	}
	if len(p) < 1 {
		return errBadRow
	}
	code := p[0]
	p = p[1:]
	local, err := next()
	if err != nil {
		return err
	}
	switch {
	case code == 0:
		domain, err := next()
		if err != nil {
			return err
		}
		r.Email = local + domain
	case int(code) <= len(commonDomains):
		r.Email = local + "@" + commonDomains[code-1]
	default:
		return errBadRow
	}
	if len(p) < 1 {
		return errBadRow
	}
	lc := p[0]
	p = p[1:]
	switch {
	case lc == 0:
	case lc == 0xff:
		if r.Locale, err = next(); err != nil {
			return err
		}
	case int(lc) <= len(commonLocales):
		r.Locale = commonLocales[lc-1]
	default:
		return errBadRow
	}
	if r.Name, err = next(); err != nil {
		return err
	}
	for len(p) > 0 {
		n, k := binary.Uvarint(p)
		if k <= 0 {
			return errBadRow
		}
		p = p[k:]
		val, err := next()
		if err != nil {
			return err
		}
		if n >= uint64(len(cols)) {
			return errColumn{n}
		}
		if r.Extra == nil {
			r.Extra = make(map[string]string)
		}
		r.Extra[cols[n]] = val
	}
	return nil
}

// columnCache keeps each campaign's column list. A campaign's columns are
// fixed once it is launched; a row that names a column the cached list
// lacks makes the reader fetch the list again.
type columnCache struct {
	mu   sync.Mutex
	cols map[string][]string
}

func (c *columnCache) get(id string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.cols[id]
	return v, ok
}

func (c *columnCache) set(id string, cols []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cols == nil {
		c.cols = make(map[string][]string)
	}
	c.cols[id] = cols
}

func (c *columnCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cols, id)
}

// columns returns campaign id's column list, from the cache unless fresh.
func (s *Store) columns(ctx context.Context, id string, fresh bool) ([]string, error) {
	if !fresh {
		if cols, ok := s.cols.get(id); ok {
			return cols, nil
		}
	}
	raw, err := s.rdb.HGet(ctx, s.metaKey(id), fColumns).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("campaign "+id, err)
	}
	var cols []string
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &cols); err != nil {
			return nil, fmt.Errorf("campaign %s: columns: %w", id, err)
		}
	}
	s.cols.set(id, cols)
	return cols, nil
}

// decode fills r from its packed row (the d, e, f, g values joined).
func (s *Store) decode(ctx context.Context, id string, r *repermit.Recipient, v string) error {
	if v == "" {
		return nil
	}
	cols, err := s.columns(ctx, id, false)
	if err != nil {
		return err
	}
	err = decodeRow(r, v, cols)
	var unknown errColumn
	if errors.As(err, &unknown) {
		if cols, err = s.columns(ctx, id, true); err != nil {
			return err
		}
		err = decodeRow(r, v, cols)
	}
	if err != nil {
		return fmt.Errorf("recipient %d of %s: %w", r.Index, id, err)
	}
	return nil
}
