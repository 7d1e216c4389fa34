package credential_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/credential"
)

func TestNewDeviceSecret(t *testing.T) {
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]bool{}
	for range 100 {
		s, err := credential.NewDeviceSecret()
		if err != nil {
			t.Fatal(err)
		}
		if !hex64.MatchString(s) {
			t.Fatalf("secret %q is not 64 lowercase hex characters", s)
		}
		if seen[s] {
			t.Fatalf("secret %q repeated", s)
		}
		seen[s] = true
	}
}

func TestNewToken(t *testing.T) {
	tok, err := credential.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	rest, ok := strings.CutPrefix(tok, credential.TokenPrefix)
	if !ok || len(rest) != 43 {
		t.Fatalf("token %q: want otr_ and 43 characters", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q does not carry 32 base64url bytes: %v", tok, err)
	}
}

func TestHashEqual(t *testing.T) {
	tests := []struct {
		name   string
		stored string
		given  string
		want   bool
	}{
		{"same", "otr_abc", "otr_abc", true},
		{"different", "otr_abc", "otr_abd", false},
		{"prefix", "otr_abc", "otr_ab", false},
		{"empty given", "otr_abc", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := credential.Equal(credential.Hash(tt.stored), tt.given); got != tt.want {
				t.Errorf("Equal(Hash(%q), %q) = %v, want %v", tt.stored, tt.given, got, tt.want)
			}
		})
	}
	if got := len(credential.Hash("x")); got != 32 {
		t.Errorf("hash length %d, want 32", got)
	}
	if credential.Equal(nil, "") {
		t.Error("a nil hash must not match anything")
	}
}

func TestBoxSealsAndOpens(t *testing.T) {
	box, err := credential.NewBox([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.Seal("p", "d1", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "s3cret") {
		t.Fatal("the sealed secret holds the secret in the clear")
	}
	if got, err := box.Open("p", "d1", sealed); err != nil || got != "s3cret" {
		t.Fatalf("Open = %q, %v; want s3cret", got, err)
	}
	again, _ := box.Seal("p", "d1", "s3cret")
	if string(again) == string(sealed) {
		t.Error("two seals of one secret are equal: the nonce is not random")
	}
	otherBox, _ := credential.NewBox([]byte("another server's key material!!!"))
	for name, open := range map[string]func() (string, error){
		"another device":  func() (string, error) { return box.Open("p", "d2", sealed) },
		"another product": func() (string, error) { return box.Open("q", "d1", sealed) },
		"another key":     func() (string, error) { return otherBox.Open("p", "d1", sealed) },
		"truncated":       func() (string, error) { return box.Open("p", "d1", sealed[:10]) },
		"empty":           func() (string, error) { return box.Open("p", "d1", nil) },
		"flipped":         func() (string, error) { b := bytes.Clone(sealed); b[len(b)-1] ^= 1; return box.Open("p", "d1", b) },
	} {
		if _, err := open(); !errors.Is(err, credential.ErrSealed) {
			t.Errorf("%s: Open error %v, want credential.ErrSealed", name, err)
		}
	}
	if _, err := credential.NewBox([]byte("short")); err == nil {
		t.Error("credential.NewBox took a 5-byte key")
	}
}
