package device

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/otter-ota/otter/sdk/wire"
)

// TestManifestMemoAnswersAsEd25519Does: a manifest found good is
// remembered; a changed field, another key or a bad signature is still
// refused, before and after; a nil memo checks every time.
func TestManifestMemoAnswersAsEd25519Does(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m := wire.Manifest{Product: "p", Module: "default", Version: "2.0.0", Size: 3, SHA256: "ab"}
	sig := m.Sign(priv)
	changed := m
	changed.Size = 4
	for _, mm := range []*ManifestMemo{nil, NewManifestMemo()} {
		for round := range 2 {
			checks := []struct {
				what string
				pub  ed25519.PublicKey
				m    wire.Manifest
				sig  string
				want bool
			}{
				{"signed", pub, m, sig, true},
				{"a field changed", pub, changed, sig, false},
				{"another key", otherPub, m, sig, false},
				{"signed by another key", pub, m, m.Sign(otherPriv), false},
				{"no signature", pub, m, "", false},
				{"a short key", pub[:16], m, sig, false},
			}
			for _, c := range checks {
				if got := mm.verify(c.pub, c.m, c.sig); got != c.want {
					t.Errorf("memo %v, round %d, %s: %v, want %v", mm != nil, round, c.what, got, c.want)
				}
			}
		}
	}
	mm := NewManifestMemo()
	for i := range maxManifestMemo + 1 {
		v := m
		v.Size = int64(i + 10)
		if !mm.verify(pub, v, v.Sign(priv)) {
			t.Fatalf("manifest %d refused", i)
		}
	}
	if n := len(mm.good); n > maxManifestMemo {
		t.Errorf("the memo holds %d manifests; the bound is %d", n, maxManifestMemo)
	}
}
