package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
)

// A session lives in one cookie: the operator's API token, a random session
// id and an expiry, sealed with AES-256-GCM under a key that every replica
// shares through the store's settings. Only signed-out sessions are kept in
// the store (until they would expire), so any replica serves any session, a
// restart signs nobody out, and a copy of a signed-out cookie is refused at
// once; the token is checked against the store on every request, so
// revoking it ends every session that holds it at once. The cookie is HttpOnly and SameSite=Strict:
// scripts never read the token.
const (
	sessionCookie = "otter_session"
	// sessionKeySetting names the shared secret in the store's settings.
	sessionKeySetting = "console.session_key"
	sessionVersion    = 1
	sessionIDLen      = 16
	// maxCookieLen bounds what is decoded from a request: a real session
	// cookie is about 140 characters.
	maxCookieLen = 1024
)

// session is a signed-in operator.
type session struct {
	id      []byte
	token   string // the API token, never sent to the browser
	expires time.Time
	// Token is the store's record of the token: its name and role.
	Token ota.Token
}

// can reports whether the session's role allows need.
func (s *session) can(need ota.Role) bool { return s != nil && s.Token.Role.Allows(need) }

// sessionKeys holds the key derived from the shared secret that seals
// cookies.
type sessionKeys struct {
	aead cipher.AEAD
}

// keys returns the session keys, creating the shared secret on first use
// (InitSetting lets racing replicas agree on one).
func (c *Console) keys(ctx context.Context) (*sessionKeys, error) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if c.sessionKeys != nil {
		return c.sessionKeys, nil
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("console: session key: %w", err)
	}
	stored, err := c.store.InitSetting(ota.WithActor(ctx, "system"), sessionKeySetting, hex.EncodeToString(fresh))
	if err != nil {
		return nil, fmt.Errorf("console: session key: %w", err)
	}
	master, err := hex.DecodeString(stored)
	if err != nil || len(master) != 32 {
		return nil, fmt.Errorf("console: setting %s is not 32 bytes of hex", sessionKeySetting)
	}
	k, err := deriveKeys(master)
	if err != nil {
		return nil, err
	}
	c.sessionKeys = k
	return k, nil
}

func deriveKeys(master []byte) (*sessionKeys, error) {
	block, err := aes.NewCipher(derive(master, "otter console session v1"))
	if err != nil {
		return nil, fmt.Errorf("console: session cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("console: session cipher: %w", err)
	}
	return &sessionKeys{aead: aead}, nil
}

func derive(master []byte, purpose string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// seal encodes a new session for token as a cookie value.
func (k *sessionKeys) seal(token string, expires time.Time) (string, error) {
	plain := make([]byte, 1+8+sessionIDLen, 1+8+sessionIDLen+len(token))
	plain[0] = sessionVersion
	binary.BigEndian.PutUint64(plain[1:9], uint64(expires.Unix()))
	if _, err := rand.Read(plain[9:]); err != nil {
		return "", fmt.Errorf("console: session id: %w", err)
	}
	plain = append(plain, token...)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("console: session nonce: %w", err)
	}
	sealed := k.aead.Seal(nonce, nonce, plain, []byte(sessionCookie))
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// errNoSession is any cookie that does not hold a live session: missing,
// forged, damaged or expired. The reason does not matter to the operator,
// who signs in again.
var errNoSession = errors.New("no valid session")

// open decodes a cookie value made by seal; it does not consult the store.
func (k *sessionKeys) open(value string, now time.Time) (*session, error) {
	if value == "" || len(value) > maxCookieLen {
		return nil, errNoSession
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	ns := k.aead.NonceSize()
	if err != nil || len(raw) < ns {
		return nil, errNoSession
	}
	plain, err := k.aead.Open(nil, raw[:ns], raw[ns:], []byte(sessionCookie))
	if err != nil || len(plain) <= 1+8+sessionIDLen || plain[0] != sessionVersion {
		return nil, errNoSession
	}
	s := &session{
		expires: time.Unix(int64(binary.BigEndian.Uint64(plain[1:9])), 0),
		id:      plain[9 : 9+sessionIDLen],
		token:   string(plain[9+sessionIDLen:]),
	}
	if !now.Before(s.expires) {
		return nil, errNoSession
	}
	return s, nil
}

// session returns the request's live session: a cookie that opens and a
// token the store still knows.
func (c *Console) session(r *http.Request) (*session, error) {
	cookie, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errNoSession
	}
	k, err := c.keys(r.Context())
	if err != nil {
		return nil, err
	}
	s, err := k.open(cookie.Value, c.now())
	if err != nil {
		return nil, err
	}
	if ended, err := c.store.SessionEnded(r.Context(), s.id); err != nil {
		return nil, err
	} else if ended {
		return nil, errNoSession // signed out, maybe in another browser
	}
	tok, err := c.store.TokenByHash(r.Context(), credential.Hash(s.token))
	if ota.ErrorCode(err) == ota.ENOTFOUND {
		return nil, errNoSession // revoked since the sign-in
	}
	if err != nil {
		return nil, err
	}
	s.Token = tok
	return s, nil
}

// setCookie writes an HttpOnly, SameSite=Strict cookie scoped to the
// whole console; maxAge < 0 deletes it.
func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || c.cfg.SecureCookies,
	})
}
