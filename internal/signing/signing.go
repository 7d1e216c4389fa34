// Package signing holds the ed25519 key that signs what devices verify:
// firmware manifests and upgrade commands. Devices trust a firmware file or
// a command only when its signature verifies with the server's public key,
// so the private key never leaves this package. (Download URLs are signed
// apart, with an HMAC key only the server checks: devicehttp.URLSigner.)
package signing

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// pemType is the PEM block type of a PKCS#8 private key, the form that
// `openssl pkey -in key.pem -pubout` reads.
const pemType = "PRIVATE KEY"

// Signer signs firmware manifests and upgrade commands with an ed25519
// private key.
type Signer struct {
	key ed25519.PrivateKey
}

// New returns a Signer over key, e.g. one generated in a test.
func New(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// Load reads a PEM PKCS#8 ed25519 private key (the --signing-key flag).
func Load(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	key, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return &Signer{key: key}, nil
}

// LoadOrCreate loads the key at path, or generates one there when no file
// exists (first start). The file is created with mode 0600 and appears
// complete or not at all, so two processes starting together end up with
// the same key.
func LoadOrCreate(path string) (*Signer, error) {
	s, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	if err := create(path, key); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return Load(path) // the key another process won the race with, if any
}

// Sign returns the base64 signature of m, as stored in ota.Firmware.
func (s *Signer) Sign(m wire.Manifest) string { return m.Sign(s.key) }

// SignCommand returns the base64 signature of an upgrade command for one
// device (the engine's CommandSigner).
func (s *Signer) SignCommand(c wire.Command) string { return c.Sign(s.key) }

// ManifestOf returns the manifest of f that its Signature covers, so that
// the uploader, the device API and the engine build it the same way.
func ManifestOf(f ota.Firmware) wire.Manifest {
	return wire.Manifest{Product: f.Product, Module: f.Module, Version: f.Version, Size: f.Size, SHA256: f.SHA256}
}

// SecretBox returns the box that seals device secrets the server must read
// back (EnOS logins). Its key is derived from the signing key's seed
// (HKDF-SHA256), so it is never stored apart, and every replica that
// shares the signing key (a cluster must) opens what another sealed.
func (s *Signer) SecretBox() (*credential.Box, error) {
	key, err := hkdf.Key(sha256.New, s.key.Seed(), nil, "otter device secret box v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive the secret box key: %w", err)
	}
	return credential.NewBox(key)
}

// PublicKey returns the key devices verify manifests and commands with.
func (s *Signer) PublicKey() ed25519.PublicKey {
	return s.key.Public().(ed25519.PublicKey)
}

func parse(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != pemType {
		return nil, fmt.Errorf("no %q PEM block found", pemType)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8 key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is a %T, want an ed25519 key", k)
	}
	return key, nil
}

// create writes key to a temporary file and hard-links it to path, which
// fails with fs.ErrExist rather than replacing a key that already exists.
func create(path string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode signing key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create signing key folder: %w", err)
	}
	f, err := os.CreateTemp(dir, ".signing-key-*") // mode 0600
	if err != nil {
		return fmt.Errorf("create signing key: %w", err)
	}
	defer os.Remove(f.Name())
	if err := writeSync(f, pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der})); err != nil {
		return err
	}
	if err := os.Link(f.Name(), path); err != nil {
		return fmt.Errorf("create signing key: %w", err)
	}
	return nil
}

func writeSync(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	return nil
}
