// Package token signs and verifies the links in campaign mail (/c/TOKEN,
// /u/TOKEN).
//
// A token is one AES-128 block holding the claims, encrypted so that it shows
// neither an address nor a readable sequence number, followed by a 128-bit
// HMAC-SHA256 tag over that ciphertext (encrypt-then-MAC), 32 bytes in all,
// written as 43 characters of unpadded URL-safe base64.
//
// The plaintext block is
//
//	version(1) | purpose(1) | campaign seq(4) | recipient(4) | deadline(4) | campaign tag(2)
//
// with integers big-endian, the deadline in Unix seconds and the campaign
// tag the first two bytes of SHA-256 of the campaign id.
//
// A token is bound to its deployment and its campaign. The deployment (the
// Redis key prefix and a random id the store creates once, see Deployment)
// goes into the derivation of both keys, so a token of one deployment fails
// the MAC of every other, with the same secret too, before anything is
// looked up. The campaign id is bound by the tag, which the MAC covers and
// the caller checks (Claims.IsFor) against the campaign its sequence number
// names: a sequence number that came to name another campaign does not
// carry the token over (but for a chance of 2^-16). Version 1 tokens (no
// binding), in the mailboxes of campaigns launched before the binding,
// still verify under their own keys, as Unbound claims: the caller accepts
// them only for a campaign launched before the binding (see
// repermit.Campaign.BoundTokens), so a confirmed recipient of such a campaign
// can still withdraw, and every later campaign refuses them. Encrypting a
// single block under ECB is safe here: the block is a permutation of its
// input and no two distinct claims share a block, so the only thing an
// observer learns is that two links with identical claims are identical. The
// same claims therefore always give the same token, which keeps re-sent mail
// and deterministic Message-IDs stable.
package token

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/repermit/repermit"
)

// Purpose says which page a token opens. Verify returns it as signed; the
// caller checks that it matches the route.
type Purpose byte

const (
	Confirm     Purpose = 1 // /c/TOKEN: confirm or decline
	Unsubscribe Purpose = 2 // /u/TOKEN: List-Unsubscribe
)

// Claims is what a token carries.
type Claims struct {
	Purpose Purpose
	// Campaign is the campaign's id, signed as its tag; Verify cannot give
	// it back, use IsFor.
	Campaign    string
	tag         uint16
	unbound     bool
	CampaignSeq uint32
	Recipient   uint32
	// Deadline is kept to the second, rounded down, so a token stops
	// working at most a second before the campaign does, never after.
	// Times before 1970 sign as 1970 (an already expired token); times after
	// 2106 sign as the last second uint32 holds.
	Deadline time.Time
}

// IsFor reports whether verified claims were signed for campaign id. Unbound
// claims are for no campaign in particular: see Unbound.
func (c Claims) IsFor(id string) bool { return !c.unbound && c.tag == campaignTag(id) }

// Unbound reports whether the claims came from a version 1 token, bound to
// neither deployment nor campaign. Accept them only for a campaign launched
// before tokens were bound, whose mails carry nothing else.
func (c Claims) Unbound() bool { return c.unbound }

func campaignTag(id string) uint16 {
	sum := sha256.Sum256([]byte(id))
	return binary.BigEndian.Uint16(sum[:2])
}

// Deployment names a deployment for NewBoundSigner: the Redis key prefix and
// the id the store keeps under it.
func Deployment(prefix, id string) string { return prefix + "\x00" + id }

var (
	ErrInvalid = errors.New("token: invalid")           // forged, truncated, garbled, wrong key
	ErrExpired = errors.New("token: past the deadline") // authentic, but the campaign has ended
)

// MinSecretLen is the shortest secret accepted, in bytes.
const MinSecretLen = 32

const (
	version    = 2
	blockLen   = aes.BlockSize
	tagLen     = 16 // 128 bits of HMAC-SHA256
	rawLen     = blockLen + tagLen
	encodedLen = (rawLen*8 + 5) / 6 // 43

	encLabel = "repermit token enc v2"
	macLabel = "repermit token mac v2"

	unboundVersion  = 1
	unboundEncLabel = "repermit token enc v1"
	unboundMacLabel = "repermit token mac v1"
)

// Signer signs with the first of its secrets and verifies with any of them.
// It is safe for concurrent use. Make one with NewSigner; the zero value
// holds no key.
type Signer struct {
	keys []*key
	// unbound verifies version 1 tokens; nothing signs with it.
	unbound []*key
	// enc is strict so that every token has exactly one spelling: the
	// lenient decoder would accept four variants of the last character
	// (its two unused bits) for the same bytes.
	enc *base64.Encoding
}

// key holds what one secret derives. It is kept behind a pointer so that
// printing a Signer shows addresses, not key material.
type key struct {
	block  cipher.Block
	macKey []byte
	work   sync.Pool // of *work
}

// work is what one call needs of a key. Pooling it halves the cost of a MAC
// (Reset restores the keyed state without rehashing the key, and hmac.New
// allocates), and its buffers replace stack arrays that would escape to the
// heap anyway on their way through the hash.Hash and cipher.Block interfaces.
type work struct {
	mac     hash.Hash
	in, out [blockLen]byte
	sum     [sha256.Size]byte
}

// ParseSecrets splits a REPERMIT_SECRET value: comma-separated secrets, the
// first signs, all verify. Blanks around each secret are dropped, so a secret
// can hold neither a comma nor leading or trailing blanks. Errors name a
// short secret by its position only.
func ParseSecrets(s string) ([][]byte, error) {
	if strings.TrimSpace(s) == "" {
		return nil, repermit.Errorf(repermit.EINVALID, "no signing secret given")
	}
	parts := strings.Split(s, ",")
	secrets := make([][]byte, len(parts))
	for i, p := range parts {
		secrets[i] = []byte(strings.TrimSpace(p))
	}
	if err := checkSecrets(secrets); err != nil {
		return nil, err
	}
	return secrets, nil
}

func checkSecrets(secrets [][]byte) error {
	if len(secrets) == 0 {
		return repermit.Errorf(repermit.EINVALID, "no signing secret given")
	}
	for i, sec := range secrets {
		if len(sec) < MinSecretLen {
			return repermit.Errorf(repermit.EINVALID,
				"signing secret %d of %d is %d bytes long; each needs at least %d",
				i+1, len(secrets), len(sec), MinSecretLen)
		}
	}
	return nil
}

// NewSigner derives the keys of each secret; secrets[0] signs. It keeps no
// reference to the secrets. Its tokens are bound to no deployment (tests,
// tools); servers use NewBoundSigner.
func NewSigner(secrets [][]byte) (*Signer, error) {
	return NewBoundSigner(secrets, "")
}

// NewBoundSigner is NewSigner for one deployment (see Deployment): its
// tokens verify with no other deployment's signer, whatever the secret.
func NewBoundSigner(secrets [][]byte, deployment string) (*Signer, error) {
	if err := checkSecrets(secrets); err != nil {
		return nil, err
	}
	s := &Signer{
		keys:    make([]*key, len(secrets)),
		unbound: make([]*key, len(secrets)),
		enc:     base64.RawURLEncoding.Strict(),
	}
	for i, sec := range secrets {
		k, err := newKey(sec, encLabel+"\x00"+deployment, macLabel+"\x00"+deployment)
		if err != nil {
			return nil, err
		}
		s.keys[i] = k
		if s.unbound[i], err = newKey(sec, unboundEncLabel, unboundMacLabel); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func newKey(secret []byte, encLabel, macLabel string) (*key, error) {
	encKey := derive(secret, encLabel)
	block, err := aes.NewCipher(encKey[:16])
	if err != nil {
		return nil, err
	}
	k := &key{block: block, macKey: derive(secret, macLabel)}
	k.work.New = func() any { return &work{mac: hmac.New(sha256.New, k.macKey)} }
	return k, nil
}

// derive separates the encryption key from the MAC key, so that no key is
// used for two primitives, and the label's version lets a later format
// change keys without a new secret.
func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// seal encrypts the block pt and writes ciphertext and tag to raw.
func (k *key) seal(raw *[rawLen]byte, pt *[blockLen]byte) {
	w := k.work.Get().(*work)
	defer k.work.Put(w)
	w.in = *pt
	k.block.Encrypt(w.out[:], w.in[:])
	w.tag(&w.out)
	copy(raw[:blockLen], w.out[:])
	copy(raw[blockLen:], w.sum[:tagLen])
}

// open decrypts raw into pt if its tag is this key's, comparing in constant
// time, and reports whether it was.
func (k *key) open(pt *[blockLen]byte, raw *[rawLen]byte) bool {
	w := k.work.Get().(*work)
	defer k.work.Put(w)
	copy(w.in[:], raw[:blockLen])
	w.tag(&w.in)
	if !hmac.Equal(w.sum[:tagLen], raw[blockLen:]) {
		return false
	}
	k.block.Decrypt(w.out[:], w.in[:])
	*pt = w.out
	return true
}

// tag leaves the MAC of ct in w.sum; ct must be w.in or w.out.
func (w *work) tag(ct *[blockLen]byte) {
	w.mac.Reset()
	w.mac.Write(ct[:])
	w.mac.Sum(w.sum[:0])
}

// Sign returns the token for c, signed with the first secret.
func (s *Signer) Sign(c Claims) string {
	var pt [blockLen]byte
	pt[0] = version
	pt[1] = byte(c.Purpose)
	binary.BigEndian.PutUint32(pt[2:6], c.CampaignSeq)
	binary.BigEndian.PutUint32(pt[6:10], c.Recipient)
	binary.BigEndian.PutUint32(pt[10:14], unixSeconds(c.Deadline))
	binary.BigEndian.PutUint16(pt[14:16], campaignTag(c.Campaign))

	var raw [rawLen]byte
	s.keys[0].seal(&raw, &pt)
	var tok [encodedLen]byte
	s.enc.Encode(tok[:], raw[:])
	return string(tok[:])
}

// open tries each key in turn. Which key matched is no secret, so the loop
// may stop at the first.
func (s *Signer) open(keys []*key, pt *[blockLen]byte, raw *[rawLen]byte) bool {
	for _, k := range keys {
		if k.open(pt, raw) {
			return true
		}
	}
	return false
}

func unixSeconds(t time.Time) uint32 {
	u := t.Unix()
	switch {
	case u < 0:
		return 0
	case u > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(u)
}

// Verify checks the MAC, then decrypts. It returns ErrInvalid for anything
// not signed by one of the secrets, having touched nothing but the string.
// When now is after the deadline it returns the claims together with
// ErrExpired, so that the caller can still tell which campaign the link was
// for. It does not check the purpose.
func (s *Signer) Verify(tok string, now time.Time) (Claims, error) {
	if len(tok) != encodedLen {
		return Claims{}, ErrInvalid
	}
	var src [encodedLen]byte
	copy(src[:], tok)
	var raw [rawLen]byte
	// A strict decoder still skips CR and LF, which shortens the output, so
	// the length is checked again on the decoded side.
	if n, err := s.enc.Decode(raw[:], src[:]); err != nil || n != rawLen {
		return Claims{}, ErrInvalid
	}
	var pt [blockLen]byte
	unbound := false
	switch {
	case s.open(s.keys, &pt, &raw):
		// An authentic tag makes this hold for every token Sign wrote; the
		// check keeps a later format that reused these keys from being
		// misread.
		if pt[0] != version {
			return Claims{}, ErrInvalid
		}
	case s.open(s.unbound, &pt, &raw):
		// Version 1 wrote zeros where version 2 has the campaign tag.
		if pt[0] != unboundVersion || pt[14] != 0 || pt[15] != 0 {
			return Claims{}, ErrInvalid
		}
		unbound = true
	default:
		return Claims{}, ErrInvalid
	}
	c := Claims{
		unbound:     unbound,
		tag:         binary.BigEndian.Uint16(pt[14:16]),
		Purpose:     Purpose(pt[1]),
		CampaignSeq: binary.BigEndian.Uint32(pt[2:6]),
		Recipient:   binary.BigEndian.Uint32(pt[6:10]),
		Deadline:    time.Unix(int64(binary.BigEndian.Uint32(pt[10:14])), 0).UTC(),
	}
	if now.After(c.Deadline) {
		return c, ErrExpired
	}
	return c, nil
}
