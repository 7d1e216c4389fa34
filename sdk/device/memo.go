package device

import (
	"crypto/ed25519"
	"encoding/base64"
	"sync"

	"github.com/otter-ota/otter/sdk/wire"
)

// ManifestMemo remembers the firmware manifests whose signature a client
// found good, for the clients of one process that share it (Config.
// Manifests): a simulator's thousands of devices are all sent the same
// firmware, and one ed25519 check costs about 100 µs of CPU, a tenth of
// what a simulated device costs in a fleet benchmark. Only good checks
// are kept, each under everything the check reads (the public key, the
// signed bytes and the signature), so a client that finds one gets the
// answer ed25519 would give. A device runs one client and needs none.
type ManifestMemo struct {
	mu   sync.Mutex
	good map[string]struct{}
}

// maxManifestMemo bounds a ManifestMemo: more firmware than this in
// flight at once empties it.
const maxManifestMemo = 64

// NewManifestMemo returns an empty ManifestMemo.
func NewManifestMemo() *ManifestMemo {
	return &ManifestMemo{good: make(map[string]struct{})}
}

// verify reports whether sig (base64) is pub's signature of m, as
// wire.Manifest.Verify does, from the memo when it holds the check. A nil
// memo checks every time.
func (mm *ManifestMemo) verify(pub ed25519.PublicKey, m wire.Manifest, sig string) bool {
	if mm == nil || len(pub) != ed25519.PublicKeySize {
		return m.Verify(pub, sig)
	}
	msg := m.SignedBytes()
	key := string(pub) + sig + "\x00" + string(msg)
	mm.mu.Lock()
	_, ok := mm.good[key]
	mm.mu.Unlock()
	if ok {
		return true
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !ed25519.Verify(pub, msg, raw) {
		return false
	}
	mm.mu.Lock()
	if len(mm.good) >= maxManifestMemo {
		clear(mm.good)
	}
	mm.good[key] = struct{}{}
	mm.mu.Unlock()
	return true
}
