// Package credential makes and checks the random secrets that authenticate
// devices and operator API tokens.
//
// Secrets are stored as a plain SHA-256 hash, not a slow password hash
// (bcrypt, argon2), on purpose: every secret is 256 bits from crypto/rand,
// so there is nothing to guess and key stretching adds no security, while a
// fleet of 10,000 devices reconnecting after a broker restart must all be
// authenticated within seconds.
package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// TokenPrefix starts every operator API token, so that a leaked token is
// easy to recognise (and to scan for in repositories and logs).
const TokenPrefix = "otr_"

// secretBytes is the entropy of every secret: 256 bits.
const secretBytes = 32

// NewDeviceSecret returns a new device secret: 32 random bytes as 64
// lowercase hex characters.
func NewDeviceSecret() (string, error) {
	b, err := random()
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// NewToken returns a new operator API token: TokenPrefix followed by the
// unpadded base64url encoding of 32 random bytes (43 characters).
func NewToken() (string, error) {
	b, err := random()
	if err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash returns the SHA-256 hash under which a secret or token is stored.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Equal reports whether secret hashes to hash, in time that does not depend
// on where the two differ.
func Equal(hash []byte, secret string) bool {
	return subtle.ConstantTimeCompare(hash, Hash(secret)) == 1
}

func random() ([]byte, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("read random bytes: %w", err)
	}
	return b, nil
}
