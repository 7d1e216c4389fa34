package devicehttp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/otter-ota/otter/sdk/wire"
)

// Defaults of a URLSigner.
const (
	// DefaultURLTTL is how long a download URL stays valid when the signer
	// is given no TTL: long enough for a slow link to fetch and resume a
	// large image, short enough that a leaked URL soon stops working.
	DefaultURLTTL = 24 * time.Hour
	// KeySetting is the store setting that holds the HMAC key of download
	// URLs, shared by every replica.
	KeySetting = "download_url_key"
	// KeySize is the length of the HMAC key in bytes.
	KeySize = 32
	// expiryStep is what expiries are rounded up to, so that the URL of
	// one device and firmware stays the same for a while (a resent command
	// carries the same URL, and caches see one object).
	expiryStep = 10 * time.Minute
	// downloadPrefix is the path under which files are served.
	downloadPrefix = "/dl/"
)

// Token errors. A missing or garbled token is ErrNoToken (HTTP 401); one
// that parses but does not hold is ErrBadToken (HTTP 403).
var (
	ErrNoToken  = errors.New("the download URL lacks a valid token")
	ErrBadToken = errors.New("the download URL is not valid")
)

// URLSigner makes and checks short-lived signed download URLs. A URL names
// the firmware, the device it was made for and its expiry, and carries an
// HMAC-SHA256 over them, so any replica that shares the key can check it
// without a database read. It implements the engine's URLSigner.
type URLSigner struct {
	base string
	key  []byte
	ttl  time.Duration
	now  func() time.Time
	// macs holds keyed HMACs, with their buffers, for reuse (*macState):
	// every download checks one, and a new one costs two SHA-256 blocks
	// and allocations before any byte of the URL is hashed.
	macs sync.Pool
}

// macState is a keyed HMAC and the buffers of one check: kept with it,
// they cost a download no allocation.
type macState struct {
	h   hash.Hash
	msg [128]byte         // what is signed
	sum [sha256.Size]byte // its HMAC
	sig [sha256.Size]byte // the URL's signature
}

// NewURLSigner returns a signer for URLs under base, the public URL at which
// devices reach the HTTP listener (e.g. "http://10.0.0.5:8080", with an
// optional path prefix). key must be KeySize bytes; ttl 0 means
// DefaultURLTTL; now nil means time.Now.
func NewURLSigner(base string, key []byte, ttl time.Duration, now func() time.Time) (*URLSigner, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("devicehttp: public URL %q must be an absolute http or https URL without query, e.g. http://10.0.0.5:8080", base)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("devicehttp: download URL key is %d bytes; want %d", len(key), KeySize)
	}
	if ttl < 0 {
		return nil, fmt.Errorf("devicehttp: download URL lifetime %s is negative", ttl)
	}
	if ttl == 0 {
		ttl = DefaultURLTTL
	}
	if now == nil {
		now = time.Now
	}
	s := &URLSigner{base: strings.TrimRight(base, "/"), key: append([]byte(nil), key...), ttl: ttl, now: now}
	s.macs.New = func() any { return &macState{h: hmac.New(sha256.New, s.key)} }
	return s, nil
}

// Grant is what a valid download URL allows: one device to fetch one
// firmware until Expires.
type Grant struct {
	Product    string
	Device     string
	FirmwareID int64
	Expires    time.Time
}

// DownloadURL returns the URL from which the device downloads the firmware:
// {base}/dl/{id}?d={product}/{device}&e={expiry}&s={signature}.
func (s *URLSigner) DownloadURL(product, device string, firmwareID int64) string {
	g := Grant{Product: product, Device: device, FirmwareID: firmwareID, Expires: s.expiry()}
	return s.base + downloadPrefix + strconv.FormatInt(firmwareID, 10) +
		"?d=" + url.QueryEscape(product) + "/" + url.QueryEscape(device) +
		"&e=" + strconv.FormatInt(g.Expires.Unix(), 10) +
		"&s=" + base64.RawURLEncoding.EncodeToString(s.mac(g))
}

// expiry is now plus the TTL, rounded up to the next step: never shorter
// than the TTL, and the same for every URL made within one step.
func (s *URLSigner) expiry() time.Time {
	step := max(min(expiryStep, s.ttl), time.Second)
	end := s.now().Add(s.ttl)
	rounded := end.Truncate(step)
	if rounded.Before(end) {
		rounded = rounded.Add(step)
	}
	return rounded
}

// mac is HMAC-SHA256 over "v1|product|device|id|expiry".
func (s *URLSigner) mac(g Grant) []byte {
	st := s.macs.Get().(*macState)
	defer s.macs.Put(st)
	return append([]byte(nil), st.mac(g)...)
}

// mac is HMAC-SHA256 over "v1|product|device|id|expiry", in st.sum. Keys
// cannot contain '|', so the fields cannot be shifted into one another.
func (st *macState) mac(g Grant) []byte {
	b := append(st.msg[:0], "v1|"...)
	b = append(b, g.Product...)
	b = append(b, '|')
	b = append(b, g.Device...)
	b = append(b, '|')
	b = strconv.AppendInt(b, g.FirmwareID, 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, g.Expires.Unix(), 10)
	st.h.Reset()
	st.h.Write(b)
	return st.h.Sum(st.sum[:0])
}

// Verify checks the token of a download request for firmware id (the path
// element) with query rawQuery. It answers ErrNoToken when the token is
// missing or garbled, and ErrBadToken when its signature does not match or
// it has expired.
func (s *URLSigner) Verify(firmwareID int64, rawQuery string) (Grant, error) {
	st := s.macs.Get().(*macState)
	defer s.macs.Put(st)
	g, err := parseToken(firmwareID, rawQuery, &st.sig)
	if err != nil {
		return Grant{}, err
	}
	if !hmac.Equal(st.sig[:], st.mac(g)) { // constant time
		return Grant{}, fmt.Errorf("%w: the signature does not match this firmware and device", ErrBadToken)
	}
	if !s.now().Before(g.Expires) {
		return Grant{}, fmt.Errorf("%w: it expired at %s", ErrBadToken, g.Expires.UTC().Format(time.RFC3339))
	}
	return g, nil
}

// parseToken reads the d, e and s parameters of a download URL, each of
// which must appear exactly once; the signature goes to sig.
func parseToken(firmwareID int64, rawQuery string, sig *[sha256.Size]byte) (Grant, error) {
	v, err := tokenParams(rawQuery)
	if err != nil {
		return Grant{}, err
	}
	product, device, err := wire.ParseUsername(v[0])
	if err != nil {
		return Grant{}, fmt.Errorf("%w: parameter \"d\" must be {product}/{device}", ErrNoToken)
	}
	exp, err := strconv.ParseInt(v[1], 10, 64)
	if err != nil || exp <= 0 {
		return Grant{}, fmt.Errorf("%w: parameter \"e\" must be a Unix time", ErrNoToken)
	}
	// Decode writes DecodedLen bytes at most: only a signature of the
	// right length is decoded (DecodeString's copy of it cost an
	// allocation, and Decode does not keep what it reads).
	enc := base64.RawURLEncoding
	if enc.DecodedLen(len(v[2])) != sha256.Size {
		return Grant{}, fmt.Errorf("%w: parameter \"s\" must be a base64url HMAC-SHA256", ErrNoToken)
	}
	if n, err := enc.Decode(sig[:], unsafe.Slice(unsafe.StringData(v[2]), len(v[2]))); err != nil || n != sha256.Size {
		return Grant{}, fmt.Errorf("%w: parameter \"s\" must be a base64url HMAC-SHA256", ErrNoToken)
	}
	return Grant{Product: product, Device: device, FirmwareID: firmwareID, Expires: time.Unix(exp, 0)}, nil
}

// tokenNames are the parameters of a download URL's token.
var tokenNames = [3]string{"d", "e", "s"}

// tokenParams reads the token's parameters from a query as url.ParseQuery
// reads a query (and refuses what it refuses), without building its map
// of slices: that cost a download a dozen allocations.
func tokenParams(rawQuery string) ([3]string, error) {
	var v [3]string
	var seen [3]int
	for q := rawQuery; q != ""; {
		var part string
		part, q, _ = strings.Cut(q, "&")
		if strings.Contains(part, ";") {
			return v, fmt.Errorf("%w: the query does not parse", ErrNoToken)
		}
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		name, err1 := queryUnescape(name)
		value, err2 := queryUnescape(value)
		if err1 != nil || err2 != nil {
			return v, fmt.Errorf("%w: the query does not parse", ErrNoToken)
		}
		for i, n := range tokenNames {
			if name == n {
				v[i] = value
				seen[i]++
			}
		}
	}
	for i, n := range seen {
		if n != 1 {
			return v, fmt.Errorf("%w: parameter %q must appear once", ErrNoToken, tokenNames[i])
		}
	}
	return v, nil
}

// queryUnescape is url.QueryUnescape, which only strings with escapes
// need.
func queryUnescape(s string) (string, error) {
	if strings.ContainsAny(s, "%+") {
		return url.QueryUnescape(s)
	}
	return s, nil
}

// Settings is the part of the store LoadKey uses.
type Settings interface {
	InitSetting(ctx context.Context, key, value string) (string, error)
}

// LoadKey returns the HMAC key of download URLs from the store setting
// KeySetting, creating a random one at first start. Replicas that start
// together all get the first one's key: InitSetting never overwrites.
func LoadKey(ctx context.Context, st Settings) ([]byte, error) {
	fresh := make([]byte, KeySize)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("devicehttp: make a download URL key: %w", err)
	}
	stored, err := st.InitSetting(ctx, KeySetting, base64.StdEncoding.EncodeToString(fresh))
	if err != nil {
		return nil, fmt.Errorf("devicehttp: load the download URL key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(stored)
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("devicehttp: setting %q is not a base64 %d-byte key; delete it to make a new one (outstanding download URLs then stop working)", KeySetting, KeySize)
	}
	return key, nil
}
