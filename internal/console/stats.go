package console

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
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
// devices they read whole indexes (BenchmarkFleetStats in the store), and
// every overview would otherwise ask again. One refresh runs at a time, in
// the background: a request waits for it only briefly (the whole of it only
// when there is no snapshot yet), then shows the previous snapshot, which
// pages label with its time.
type statsCache struct {
	st    store.Stats
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger
	grace time.Duration

	mu         sync.Mutex
	cur        *fleet
	stale      bool          // forces a refresh before ttl
	refreshing chan struct{} // closed when the running refresh ends
	err        error         // of the last refresh
}

// Refresh bounds: how long a request waits for a refresh before it shows
// the previous snapshot, and how long a refresh may take.
const (
	statsGrace   = 300 * time.Millisecond
	statsTimeout = 2 * time.Minute
)

func newStatsCache(st store.Stats, ttl time.Duration, now func() time.Time, log *slog.Logger) *statsCache {
	return &statsCache{st: st, ttl: ttl, now: now, log: log, grace: statsGrace}
}

// get returns the newest snapshot, refreshing it when it is older than ttl.
func (c *statsCache) get(ctx context.Context) (*fleet, error) {
	c.mu.Lock()
	cur := c.cur
	if cur != nil && !c.stale && c.now().Sub(cur.At) < c.ttl {
		c.mu.Unlock()
		return cur, nil
	}
	done := c.refreshing
	if done == nil {
		done = make(chan struct{})
		c.refreshing, c.stale = done, false
		// The refresh outlives this request: others share its result.
		go c.refresh(context.WithoutCancel(ctx), done)
	}
	c.mu.Unlock()
	var grace <-chan time.Time
	if cur != nil {
		grace = time.After(c.grace)
	}
	select {
	case <-done:
	case <-grace:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil, c.err
	}
	return c.cur, nil
}

func (c *statsCache) refresh(ctx context.Context, done chan struct{}) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	f, err := c.load(ctx)
	if err != nil {
		c.log.ErrorContext(ctx, "console: fleet counts", "err", err)
	}
	c.mu.Lock()
	if err == nil {
		c.cur = f
	}
	c.err, c.refreshing = err, nil
	c.mu.Unlock()
	close(done)
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

// invalidate marks the snapshot stale after the console changed the
// fleet, so that the next page shows the change.
func (c *statsCache) invalidate() {
	c.mu.Lock()
	c.stale = true
	c.mu.Unlock()
}
