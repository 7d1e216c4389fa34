package wire

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// ManifestType is the DSSE payload type of a firmware manifest.
const ManifestType = "application/vnd.otter.manifest+json"

// Manifest is what otter signs for each firmware: the facts a device must
// trust before it installs a file.
type Manifest struct {
	Product string `json:"product"`
	Module  string `json:"module"`
	Version string `json:"version"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"` // lowercase hex
}

// Payload returns the manifest's canonical JSON: the fields in the order
// above, no spaces, standard JSON string escaping.
func (m Manifest) Payload() []byte {
	b, err := json.Marshal(m)
	if err != nil { // a struct of strings and an integer always encodes
		panic(fmt.Sprintf("wire: encode manifest: %v", err))
	}
	return b
}

// SignedBytes returns the exact bytes the ed25519 signature covers: the DSSE
// pre-authentication encoding of the payload,
//
//	"DSSEv1" SP len(type) SP type SP len(payload) SP payload
//
// with lengths in decimal ASCII. Signing these bytes rather than re-encoded
// JSON means a device verifies exactly what the server signed.
func (m Manifest) SignedBytes() []byte {
	p := m.Payload()
	b := make([]byte, 0, 64+len(ManifestType)+len(p))
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(ManifestType)), 10)
	b = append(b, ' ')
	b = append(b, ManifestType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(p)), 10)
	b = append(b, ' ')
	b = append(b, p...)
	return b
}

// Sign returns the base64 (standard, padded) ed25519 signature of m.
func (m Manifest) Sign(key ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, m.SignedBytes()))
}

// Verify reports whether sig (base64) is pub's signature of m.
func (m Manifest) Verify(pub ed25519.PublicKey, sig string) bool {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, m.SignedBytes(), raw)
}
