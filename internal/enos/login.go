// Package enos is otter's codec of EnOS's device protocol (the login, the
// OTA topics and their JSON envelope), so that devices built on EnOS's
// device SDKs upgrade through otter unchanged. It does no I/O: the broker
// (internal/mqtt) checks logins and maps messages onto the engine with it.
// The protocol's facts, and what otter supports of it: docs/protocol-enos.md.
package enos

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

// Login is an EnOS static login (securemode 2) read from a CONNECT: client
// id "{clientId}|securemode=2,signmethod=sha256,timestamp={ms}|", user
// name "{deviceKey}&{productKey}".
type Login struct {
	ClientID   string // the client id's part before the first '|'
	SecureMode string
	SignMethod string
	Timestamp  string // as sent: milliseconds, perhaps with a fraction
	Product    string
	Device     string
}

// IsLogin reports whether a CONNECT user name is EnOS's ("{device}&{product}")
// rather than otter's ("{product}/{device}").
func IsLogin(username string) bool { return strings.Contains(username, "&") }

// LoginError says why a login cannot be read.
type LoginError struct{ Reason string }

func (e *LoginError) Error() string { return "EnOS login: " + e.Reason }

// maxClientID bounds the client id quoted or parsed.
const maxClientID = 256

// ParseLogin reads an EnOS login from a CONNECT's client id and user name.
// It checks the form, not the signature (Verify) nor the time (Time).
func ParseLogin(clientID, username string) (Login, error) {
	var l Login
	dev, prod, ok := strings.Cut(username, "&")
	if !ok {
		return l, &LoginError{"the user name must be {deviceKey}&{productKey}"}
	}
	if wire.CheckKey("device key", dev) != nil || wire.CheckKey("product key", prod) != nil {
		return l, &LoginError{fmt.Sprintf("user name %q: device and product keys are %s", wire.Clip(username, 100), wire.KeyRule)}
	}
	l.Device, l.Product = dev, prod
	if len(clientID) > maxClientID {
		return l, &LoginError{fmt.Sprintf("client id of %d bytes, at most %d", len(clientID), maxClientID)}
	}
	id, params, ok := strings.Cut(clientID, "|")
	if !ok || id == "" {
		return l, &LoginError{"the client id must be {clientId}|securemode=2,signmethod=sha256,timestamp={ms}|"}
	}
	l.ClientID = id
	for kv := range strings.SplitSeq(strings.TrimSuffix(params, "|"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch strings.ToLower(k) {
		case "securemode":
			l.SecureMode = v
		case "signmethod":
			l.SignMethod = strings.ToLower(v)
		case "timestamp":
			l.Timestamp = v
		}
	}
	switch {
	case l.SecureMode == "":
		return l, &LoginError{"the client id names no securemode"}
	case l.SecureMode != "2":
		return l, &LoginError{fmt.Sprintf("securemode %q is not supported: otter takes the static login (securemode=2) only", wire.Clip(l.SecureMode, 20))}
	case newHash(l.SignMethod) == nil:
		return l, &LoginError{fmt.Sprintf("signmethod %q is not one of sha256, sha1, md5 (or hmacsha256, hmacsha1, hmacmd5)", wire.Clip(l.SignMethod, 20))}
	case l.Timestamp == "":
		return l, &LoginError{"the client id names no timestamp"}
	}
	if _, err := l.Time(); err != nil {
		return l, err
	}
	return l, nil
}

// Time returns the login's timestamp: milliseconds since the Unix epoch,
// written as an integer or (EnOS's Python SDK) with a decimal fraction.
func (l Login) Time() (time.Time, error) {
	whole, frac, _ := strings.Cut(l.Timestamp, ".")
	ms, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || ms < 0 || strings.Trim(frac, "0123456789") != "" {
		return time.Time{}, &LoginError{fmt.Sprintf("timestamp %q is not milliseconds since 1970", wire.Clip(l.Timestamp, 40))}
	}
	return time.UnixMilli(ms), nil
}

// newHash returns the digest of a sign method; the "hmac" names of EnOS's
// SDKs are plain digests too. Nil for an unknown method.
func newHash(method string) hash.Hash {
	switch strings.TrimPrefix(method, "hmac") {
	case "sha256":
		return sha256.New()
	case "sha1":
		return sha1.New()
	case "md5":
		return md5.New()
	}
	return nil
}

// Sign returns the password a device with secret sends for this login:
// the hex digest (by the sign method) of the parameters sorted by name and
// concatenated as name+value, followed by the secret. Lowercase; devices
// may send either case.
func (l Login) Sign(secret string) string {
	h := newHash(l.SignMethod)
	if h == nil {
		return ""
	}
	h.Write([]byte("clientId" + l.ClientID + "deviceKey" + l.Device + "productKey" + l.Product + "timestamp" + l.Timestamp + secret))
	return hex.EncodeToString(h.Sum(nil))
}

// Verify reports whether password is the signature of this login with
// secret, comparing hex case-insensitively in constant time.
func (l Login) Verify(password, secret string) bool {
	want := l.Sign(secret)
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(password))) == 1
}
