package repermit

import (
	"crypto/sha256"
	"encoding/hex"
)

// AddressHash is the lower-case hex SHA-256 of a normalized address: the
// only form in which an erased address stays on the suppression list.
func AddressHash(normalized string) string {
	sum := sha256.Sum256([]byte(normalized))
	return hex.EncodeToString(sum[:])
}
