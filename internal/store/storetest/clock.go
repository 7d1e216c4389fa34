package storetest

import (
	"sync"
	"time"
)

// Clock is a clock a test moves: for store.WithClock, and for the Now of
// the engine and the HTTP handlers, so that they share one time. NewClock
// makes one that stands still until moved; the zero value follows the real
// time, shifted by what Add adds. It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	start  time.Time // zero: the real time
	offset time.Duration
}

// NewClock returns a clock stopped at start.
func NewClock(start time.Time) *Clock { return &Clock{start: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.start.IsZero() {
		return time.Now().Add(c.offset)
	}
	return c.start.Add(c.offset)
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// Set stops the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start, c.offset = t, 0
}
