package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache keeps prepared statements of the reads that run outside a
// transaction, for SQLite. Each query through database/sql without one is
// parsed and planned again: about 100 µs of CPU in the pure-Go SQLite per
// query, as much as reading a page of 100 devices' rows. PostgreSQL needs
// none: pgx caches its statements per connection.
//
// The cache only grows, to max statements: the store's reads come in a few
// dozen shapes (IN lists are padded to a few lengths, see inPadded), and a
// query that finds the cache full runs unprepared, as before.
type stmtCache struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
	max   int
}

func newStmtCache(max int) *stmtCache {
	return &stmtCache{stmts: map[string]*sql.Stmt{}, max: max}
}

// get returns the prepared statement of q, preparing it on first use; nil
// when the cache is full (or q fails to prepare: running it unprepared
// reports the error as before).
func (c *stmtCache) get(ctx context.Context, db *sql.DB, q string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.stmts[q]
	full := len(c.stmts) >= c.max
	c.mu.Unlock()
	if ok || full {
		return st
	}
	// Prepared outside the lock: preparing takes a connection, which may
	// mean waiting for one.
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.stmts[q]; ok || len(c.stmts) >= c.max {
		st.Close() // another reader prepared it first, or filled the cache
		return old
	}
	c.stmts[q] = st
	return st
}

// close closes every statement; the cache is empty after.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.stmts {
		errs = append(errs, st.Close())
		delete(c.stmts, q)
	}
	return errors.Join(errs...)
}
