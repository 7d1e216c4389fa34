package console

import (
	"context"
	"fmt"
	"time"

	"github.com/otter-ota/otter/internal/store"
)

// fleet is a snapshot of the fleet's aggregates.
type fleet struct {
	At       time.Time
	Products []store.ProductStats
	Versions []store.VersionCount
	Devices  int64
	Online   int64
}

// product returns the counts of one product (zero when it has no device).
func (f *fleet) product(key string) store.ProductStats {
	for _, p := range f.Products {
		if p.Product == key {
			return p
		}
	}
	return store.ProductStats{Product: key}
}

// versionsOf returns the version counts of one product.
func (f *fleet) versionsOf(product string) []store.VersionCount {
	var out []store.VersionCount
	for _, v := range f.Versions {
		if v.Product == product {
			out = append(out, v)
		}
	}
	return out
}

// statsCache keeps the fleet's aggregates for a while: at 1,000,000
// devices they read whole indexes, and every overview would otherwise ask
// again. One request at a time refreshes a stale snapshot; the others wait
// for it rather than run the same heavy queries side by side.
type statsCache struct {
	st   store.Stats
	ttl  time.Duration
	now  func() time.Time
	lock chan struct{} // held while reading or refreshing cur
	cur  *fleet
}

func newStatsCache(st store.Stats, ttl time.Duration, now func() time.Time) *statsCache {
	return &statsCache{st: st, ttl: ttl, now: now, lock: make(chan struct{}, 1)}
}

// get returns a snapshot at most ttl old.
func (c *statsCache) get(ctx context.Context) (*fleet, error) {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.lock }()
	if c.cur != nil && c.now().Sub(c.cur.At) < c.ttl {
		return c.cur, nil
	}
	f, err := c.load(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = f
	return f, nil
}

func (c *statsCache) load(ctx context.Context) (*fleet, error) {
	f := &fleet{At: c.now()}
	var err error
	if f.Products, err = c.st.ProductStats(ctx); err != nil {
		return nil, fmt.Errorf("fleet stats: %w", err)
	}
	if f.Versions, err = c.st.VersionCounts(ctx); err != nil {
		return nil, fmt.Errorf("fleet stats: %w", err)
	}
	for _, p := range f.Products {
		f.Devices += p.Devices
		f.Online += p.Online
	}
	return f, nil
}
