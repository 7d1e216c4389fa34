package credential

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Box seals device secrets that the server must be able to read back (the
// EnOS login signs with the secret itself, so a hash is not enough) with
// AES-256-GCM under a key of the server's. Each sealed secret is bound to
// its device: the product and device keys are the additional data, so a
// sealed secret copied to another device's row does not open.
type Box struct {
	aead cipher.AEAD
}

// sealVersion starts every sealed secret, so that another scheme can be
// told apart later.
const sealVersion = 1

// NewBox returns a Box keyed by key (32 bytes).
func NewBox(key []byte) (*Box, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secret box: key of %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret box: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret box: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts the secret of device key of product.
func (b *Box) Seal(product, key, secret string) ([]byte, error) {
	nonce := make([]byte, b.aead.NonceSize(), 1+b.aead.NonceSize()+len(secret)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal secret: %w", err)
	}
	out := append([]byte{sealVersion}, nonce...)
	return b.aead.Seal(out, nonce, []byte(secret), additional(product, key)), nil
}

// ErrSealed says a sealed secret does not open with this key, or is not
// one: another server key, a damaged or moved row.
var ErrSealed = errors.New("sealed secret does not open with this server's key")

// Open decrypts a secret Seal sealed for the same device.
func (b *Box) Open(product, key string, sealed []byte) (string, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n+b.aead.Overhead() || sealed[0] != sealVersion {
		return "", ErrSealed
	}
	plain, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], additional(product, key))
	if err != nil {
		return "", ErrSealed
	}
	return string(plain), nil
}

// additional is the data a sealed secret is bound to; keys contain no
// '/', so "p/d" names one device.
func additional(product, key string) []byte { return []byte(product + "/" + key) }
