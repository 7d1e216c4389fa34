package devicehttp

import (
	"context"
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
	entries map[int64]firmwareEntry
}

type firmwareEntry struct {
	fw      ota.Firmware
	expires time.Time
}

func newFirmwareCache(st Store) *firmwareCache {
	return &firmwareCache{st: st, now: time.Now, entries: map[int64]firmwareEntry{}}
}

// get returns firmware id, from memory when a fresh copy is there. A
// deleted firmware answers an *ota.Error of code ENOTFOUND, as a missing
// one does.
func (c *firmwareCache) get(ctx context.Context, id int64) (ota.Firmware, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[id]
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e.fw, nil
	}
	return c.load(ctx, id)
}

// load reads firmware id from the store and caches it while it may be
// served.
func (c *firmwareCache) load(ctx context.Context, id int64) (ota.Firmware, error) {
	fw, err := c.st.GetFirmware(ctx, id)
	if err == nil && fw.Status == ota.FirmwareDeleted {
		err = ota.Errorf(ota.ENOTFOUND, "firmware %d was deleted", id)
	}
	if err != nil {
		c.forget(id)
		return fw, err
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= firmwareCacheSize {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= firmwareCacheSize {
			clear(c.entries)
		}
	}
	c.entries[id] = firmwareEntry{fw: fw, expires: now.Add(firmwareTTL)}
	return fw, nil
}

func (c *firmwareCache) forget(id int64) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
