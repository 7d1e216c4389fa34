package devicehttp

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// firmwareTTL is how long a download trusts what it read of a firmware.
// A firmware never changes but for its status, and of the statuses only
// deletion matters to a download. The API deletes the file right after
// the row, and a download that finds the file gone reads the row again,
// so the TTL only bounds the case where that removal of the file failed.
const firmwareTTL = 5 * time.Second

// firmwareCacheSize bounds the firmware held; only firmware that exists
// and that a valid signed URL names gets in, so it is rarely reached.
const firmwareCacheSize = 4096

// firmwareCache keeps firmware rows in memory for firmwareTTL, so that a
// fleet downloading the same image does not read the database at every
// request. Deleted and unknown firmware is never cached.
type firmwareCache struct {
	st  Store
	now func() time.Time // the wall clock: entries expire on it

	mu      sync.RWMutex
	entries map[int64]*firmwareEntry
}

// firmwareEntry is a firmware as downloads serve it: the row and the
// header values of its file, made once rather than at every download.
// It is never changed once made.
type firmwareEntry struct {
	fw      ota.Firmware
	expires time.Time
	// disposition, etag and modified are the Content-Disposition, ETag
	// and Last-Modified of the file ("" for no Last-Modified).
	disposition, etag, modified string
}

func newFirmwareEntry(fw ota.Firmware, expires time.Time) *firmwareEntry {
	e := &firmwareEntry{fw: fw, expires: expires, disposition: `attachment; filename="` + fileName(fw) + `"`, etag: etag(fw)}
	if !fw.CreatedAt.IsZero() && !fw.CreatedAt.Equal(time.Unix(0, 0)) {
		e.modified = fw.CreatedAt.UTC().Format(http.TimeFormat)
	}
	return e
}

func newFirmwareCache(st Store) *firmwareCache {
	return &firmwareCache{st: st, now: time.Now, entries: map[int64]*firmwareEntry{}}
}

// get returns firmware id, from memory when a fresh copy is there. A
// deleted firmware answers an *ota.Error of code ENOTFOUND, as a missing
// one does.
func (c *firmwareCache) get(ctx context.Context, id int64) (*firmwareEntry, error) {
	now := c.now()
	c.mu.RLock()
	e := c.entries[id]
	c.mu.RUnlock()
	if e != nil && now.Before(e.expires) {
		return e, nil
	}
	return c.load(ctx, id)
}

// load reads firmware id from the store and caches it while it may be
// served.
func (c *firmwareCache) load(ctx context.Context, id int64) (*firmwareEntry, error) {
	fw, err := c.st.GetFirmware(ctx, id)
	if err == nil && fw.Status == ota.FirmwareDeleted {
		err = ota.Errorf(ota.ENOTFOUND, "firmware %d was deleted", id)
	}
	if err != nil {
		c.forget(id)
		return &firmwareEntry{fw: fw}, err
	}
	now := c.now()
	e := newFirmwareEntry(fw, now.Add(firmwareTTL))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= firmwareCacheSize {
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= firmwareCacheSize {
			clear(c.entries)
		}
	}
	c.entries[id] = e
	return e, nil
}

func (c *firmwareCache) forget(id int64) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
