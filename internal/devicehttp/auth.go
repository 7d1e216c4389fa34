package devicehttp

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// Defaults of the credential cache.
const (
	// DefaultCredentialTTL is how long a device's credentials are trusted
	// from memory. The API's changes to a device (create, rotate-secret,
	// delete) reach the cache at once through Handler.CredentialsChanged;
	// the TTL bounds staleness only for changes made by another process.
	DefaultCredentialTTL = 30 * time.Second
	// DefaultCredentialCacheSize bounds the devices whose credentials are
	// held in memory.
	DefaultCredentialCacheSize = 100_000
	// recheckAfter is how old a cached entry must be before a failed login
	// reads the store again: a device that just got a new secret, or was
	// just registered, is let in within this time, while a device with a
	// wrong secret costs at most one read per this time.
	recheckAfter = 5 * time.Second
)

// errUnauthorized is a refused login; the message is what the device sees.
var errUnauthorized = &wire.Error{Code: wire.CodeUnauthorized,
	Message: "unknown device or wrong secret: send HTTP Basic auth with user {product}/{device} and the device secret"}

// credCache keeps device credentials in memory for a short time, so that a
// polling fleet does not read the database at every request. Unknown
// devices are cached too, so that a flood of bad logins costs no reads.
// The LRU bounds the entries and drops them once their TTL has passed (on
// the wall clock: the library keeps its own time).
type credCache struct {
	st   Store
	now  func() time.Time
	hits func(hit bool)
	lru  *expirable.LRU[string, credEntry]

	mu sync.Mutex
	// gen moves on every forget: a fetch that read the store before a
	// change and returns after it must not cache what it read.
	gen uint64
}

type credEntry struct {
	creds ota.DeviceCredentials
	found bool
	at    time.Time // when it was read, by the handler's clock
}

// newCredCache starts the LRU's sweeper goroutine, which v2.0.7 of the
// library never stops: make one cache per Handler, not per request.
func newCredCache(st Store, ttl time.Duration, size int, now func() time.Time, hits func(bool)) *credCache {
	return &credCache{st: st, now: now, hits: hits, lru: expirable.NewLRU[string, credEntry](size, nil, ttl)}
}

// authenticate checks a device's secret and returns the device. A refusal
// is errUnauthorized; a store that fails is any other error.
func (c *credCache) authenticate(ctx context.Context, product, key, secret string) (engine.Device, error) {
	e, cached, err := c.entry(ctx, product, key)
	if err != nil {
		return engine.Device{}, err
	}
	ok := e.found && credential.Equal(e.creds.SecretHash, secret)
	if !ok && cached && c.now().Sub(e.at) >= recheckAfter {
		if e, err = c.fetch(ctx, product, key); err != nil {
			return engine.Device{}, err
		}
		ok = e.found && credential.Equal(e.creds.SecretHash, secret)
	}
	if !ok {
		return engine.Device{}, errUnauthorized
	}
	return engine.Device{ID: e.creds.DeviceID, Product: product, Key: key}, nil
}

// exists reports whether a device exists, from the cache when it can.
func (c *credCache) exists(ctx context.Context, product, key string) (bool, error) {
	e, _, err := c.entry(ctx, product, key)
	return e.found, err
}

// entry returns the cached entry of a device, or reads it; cached says
// which.
func (c *credCache) entry(ctx context.Context, product, key string) (credEntry, bool, error) {
	if e, ok := c.lru.Get(wire.Username(product, key)); ok {
		c.hits(true)
		return e, true, nil
	}
	c.hits(false)
	e, err := c.fetch(ctx, product, key)
	return e, false, err
}

// fetch reads a device's credentials from the store and caches them.
func (c *credCache) fetch(ctx context.Context, product, key string) (credEntry, error) {
	creds, err := c.read(ctx, c.st, product, key)
	if err != nil && ota.ErrorCode(err) != ota.ENOTFOUND {
		return credEntry{}, err
	}
	return credEntry{creds: creds, found: err == nil}, nil
}

// read reads a device's credentials from st and caches the answer (a
// device found, or not found), unless the device changed meanwhile.
func (c *credCache) read(ctx context.Context, st CredentialReader, product, key string) (ota.DeviceCredentials, error) {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	creds, err := st.Credentials(ctx, product, key)
	if err != nil && ota.ErrorCode(err) != ota.ENOTFOUND {
		return creds, err
	}
	c.put(wire.Username(product, key), credEntry{creds: creds, found: err == nil, at: c.now()}, gen)
	return creds, err
}

// forget drops what the cache knows of a device whose credentials
// changed; the next login reads the store.
func (c *credCache) forget(product, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(wire.Username(product, key))
	c.gen++
}

// put caches e unless a device changed since gen was read.
func (c *credCache) put(name string, e credEntry, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		c.lru.Add(name, e)
	}
}
