package cli_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	sdkdevice "github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// TestSigningKeyCommandPrintsTheKeyFirmwareVerifiesWith checks that the PEM
// `otter signing-key` prints is the key a device needs: the signature of a
// firmware the server signed verifies with it, and -o json gives the same
// key as base64.
func TestSigningKeyCommandPrintsTheKeyFirmwareVerifiesWith(t *testing.T) {
	o := startOtter(t)
	o.ok("product", "create", "demo")
	var fw struct {
		Version, Module, SHA256, Signature string
		Size                               int64
	}
	o.json(&fw, "firmware", "add", "--product", "demo", "--version", "1.1.0", "--file", writeFile(t, "hello otter\n"))

	out := o.ok("signing-key")
	block, rest := pem.Decode([]byte(out))
	if block == nil || block.Type != "PUBLIC KEY" || len(rest) != 0 {
		t.Fatalf("signing-key printed %q; want one PEM PUBLIC KEY block", out)
	}
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	pub, ok := parsed.(ed25519.PublicKey)
	if err != nil || !ok {
		t.Fatalf("PEM is not an ed25519 public key: %T, %v", parsed, err)
	}
	m := wire.Manifest{Product: "demo", Module: fw.Module, Version: fw.Version, Size: fw.Size, SHA256: fw.SHA256}
	if !m.Verify(pub, fw.Signature) {
		t.Fatal("the firmware signature does not verify with the printed key")
	}
	if sdkKey, err := sdkdevice.ParsePublicKey(out); err != nil || !pub.Equal(sdkKey) {
		t.Fatalf("the device SDK reads the printed PEM as %x, %v", sdkKey, err)
	}
	var js struct {
		Algorithm string `json:"algorithm"`
		PublicKey []byte `json:"public_key"`
	}
	o.json(&js, "signing-key")
	if js.Algorithm != "ed25519" || !pub.Equal(ed25519.PublicKey(js.PublicKey)) {
		t.Fatalf("signing-key -o json: %+v; want the PEM's key", js)
	}
	o.fails(2, `unexpected argument "x"`, "signing-key", "x")
}

// writeFile writes content to a new file in a test folder and returns its
// path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
