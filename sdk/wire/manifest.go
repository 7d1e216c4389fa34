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
func (m Manifest) SignedBytes() []byte { return pae(ManifestType, m.Payload()) }

// pae is the DSSE v1 pre-authentication encoding of payload of type typ.
func pae(typ string, p []byte) []byte {
	b := make([]byte, 0, 64+len(typ)+len(p))
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(typ)), 10)
	b = append(b, ' ')
	b = append(b, typ...)
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
	return verify(pub, m.SignedBytes(), sig)
}

func verify(pub ed25519.PublicKey, msg []byte, sig string) bool {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, msg, raw)
}

// CommandType is the DSSE payload type of a signed upgrade command.
const CommandType = "application/vnd.otter.command+json"

// Command is what otter signs for each upgrade it sends to one device: the
// firmware manifest plus every field of the upgrade message that changes
// what the device does, bound to the device, the job and the attempt. The
// firmware's Manifest signature proves the file; the command signature
// proves that the server asked this device to install it, in this way, for
// this job, so nothing can be added in transit (allow_downgrade) and a
// command cannot be moved to another device.
type Command struct {
	Product        string            `json:"product"`
	Device         string            `json:"device"`
	Job            string            `json:"job"`
	Attempt        int               `json:"attempt"`
	Module         string            `json:"module"`
	Version        string            `json:"version"`
	Size           int64             `json:"size"`
	SHA256         string            `json:"sha256"`
	Mode           Mode              `json:"mode"`
	Confirm        bool              `json:"confirm"`
	ConfirmInstall bool              `json:"confirm_install"`
	AllowDowngrade bool              `json:"allow_downgrade"`
	Params         map[string]string `json:"params"` // {} when none; keys in byte order
}

// Payload returns the command's canonical JSON: the fields in the order
// above, no spaces, standard JSON string escaping, params as an object
// (never null) with its keys sorted by their bytes.
func (c Command) Payload() []byte {
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	b, err := json.Marshal(c)
	if err != nil { // strings, integers, bools and a string map always encode
		panic(fmt.Sprintf("wire: encode command: %v", err))
	}
	return b
}

// SignedBytes returns the exact bytes the command signature covers: the
// DSSE pre-authentication encoding of the payload with CommandType.
func (c Command) SignedBytes() []byte { return pae(CommandType, c.Payload()) }

// Sign returns the base64 (standard, padded) ed25519 signature of c.
func (c Command) Sign(key ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
}

// Verify reports whether sig (base64) is pub's signature of c.
func (c Command) Verify(pub ed25519.PublicKey, sig string) bool {
	return verify(pub, c.SignedBytes(), sig)
}
