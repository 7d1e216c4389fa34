// Package priority lets the operator's reads go before the engine's
// background work. The API marks each read in flight; the engine, between
// the batches that start a task's jobs, asks whether reads are in flight
// and waits a moment for them (see engine.Config.Reads). On two cores a
// batch of job starts competes with the readers for the CPU, and a reader
// on SQLite empties its page cache after every commit: a read that waits
// behind a whole batch is the tail of the lists' latency.
package priority

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Recent is how long after the last read ended reads still count as
// coming (Wait's answer): a client that reads page after page leaves gaps
// between its requests, and background work that took a gap for a long
// stretch of its own would be in the way of the next request.
const Recent = time.Second

// Reads counts the reads in flight. The zero value is ready to use; a nil
// *Reads counts nothing and never waits.
type Reads struct {
	mu sync.Mutex
	n  int
	// idle, while n > 0, is closed when n drops back to 0.
	idle chan struct{}
	// ended is when n last dropped to 0.
	ended time.Time
}

// Begin marks a read in flight until end is called (once).
func (r *Reads) Begin() (end func()) {
	if r == nil {
		return func() {}
	}
	r.mu.Lock()
	if r.n == 0 {
		r.idle = make(chan struct{})
	}
	r.n++
	r.mu.Unlock()
	return r.end
}

func (r *Reads) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n--; r.n == 0 {
		close(r.idle)
		r.idle = nil
		r.ended = time.Now()
	}
}

// Busy reports whether a read is in flight.
func (r *Reads) Busy() bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n > 0
}

// Wait waits until no read is in flight, for at most max, or until ctx
// ends; it returns at once when none is. It reports whether reads are
// coming: one was in flight when it was called, or the last ended less
// than Recent ago.
func (r *Reads) Wait(ctx context.Context, max time.Duration) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	idle, ended := r.idle, r.ended
	r.mu.Unlock()
	if idle == nil {
		return !ended.IsZero() && time.Since(ended) < Recent
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// Middleware marks each GET and HEAD request a read in flight while next
// serves it. Other methods change things and are not reads: they go
// through the engine's loop anyway.
func (r *Reads) Middleware(next http.Handler) http.Handler {
	if r == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			next.ServeHTTP(w, req)
			return
		}
		defer r.Begin()()
		next.ServeHTTP(w, req)
	})
}
