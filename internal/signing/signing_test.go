package signing_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/sdk/wire"
)

var manifest = wire.Manifest{Product: "demo", Module: "default", Version: "1.2.0", Size: 42, SHA256: "ab"}

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "signing.pem")
	s1, err := signing.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	s2, err := signing.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !s1.PublicKey().Equal(s2.PublicKey()) {
		t.Fatal("second start made a new key")
	}
	sig := s1.Sign(manifest)
	if !manifest.Verify(s2.PublicKey(), sig) {
		t.Fatal("signature does not verify with the reloaded key")
	}
	other := manifest
	other.Version = "1.2.1"
	if other.Verify(s1.PublicKey(), sig) {
		t.Fatal("signature verifies for another manifest")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("key folder holds %d entries, want the key only", len(entries))
	}
}

func TestLoadOrCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.pem")
	keys := make([]ed25519.PublicKey, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			s, err := signing.LoadOrCreate(path)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = s.PublicKey()
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !k.Equal(keys[0]) {
			t.Fatal("racing starts ended with different keys")
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	rsaLike, _ := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(make([]byte, 32)))
	tests := map[string][]byte{
		"not pem":     []byte("hello"),
		"wrong block": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaLike}),
		"bad der":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	}
	for name, content := range tests {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := signing.Load(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
		if _, err := signing.LoadOrCreate(path); err == nil {
			t.Errorf("%s: LoadOrCreate replaced a bad key file instead of refusing", name)
		}
	}
	if _, err := signing.Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("loaded a missing file")
	}
}

// TestOpenSSLReadsKey checks the file format with openssl itself, when it is
// installed: the public key openssl derives must be ours.
func TestOpenSSLReadsKey(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	path := filepath.Join(t.TempDir(), "signing.pem")
	s, err := signing.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "pkey", "-in", path, "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Fatalf("openssl pkey: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub.(ed25519.PublicKey), s.PublicKey()) {
		t.Fatal("openssl derives another public key")
	}
}

func TestNew(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s := signing.New(priv)
	if !s.PublicKey().Equal(pub) || !manifest.Verify(pub, s.Sign(manifest)) {
		t.Fatal("New signer does not sign with its key")
	}
}

func TestManifestOf(t *testing.T) {
	f := ota.Firmware{ID: 9, Product: "demo", Module: "default", Version: "1.2.0", Size: 42, SHA256: "ab", Description: "not signed"}
	if got := signing.ManifestOf(f); got != manifest {
		t.Fatalf("ManifestOf = %+v, want %+v", got, manifest)
	}
}

// The secret box is derived from the signing key: two servers with one
// key (replicas) open each other's sealed secrets, another key does not.
func TestSecretBoxFollowsTheSigningKey(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	box := func(k ed25519.PrivateKey) *credential.Box {
		b, err := signing.New(k).SecretBox()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sealed, err := box(key).Seal("p", "d", "secret")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := box(key).Open("p", "d", sealed); err != nil || got != "secret" {
		t.Errorf("the same signing key opens %q, %v; want secret", got, err)
	}
	if _, err := box(other).Open("p", "d", sealed); err == nil {
		t.Error("another signing key opened the sealed secret")
	}
}
