package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
)

// binder adapts placeholders to the database. Queries are written with
// PostgreSQL's $N. SQLite accepts $N too, but as a parameter name that it
// resolves with a linear search, once when parsing and once more per bound
// argument: quadratic, and seconds long for a multi-row INSERT of 10,000
// parameters. For SQLite (positional), rebind turns $1..$n that appear once
// each and in order into plain ?, which SQLite numbers directly; any other
// query stays as written.
type binder struct{ positional bool }

// rebind returns q with placeholders the database numbers cheaply. SQL text
// must not hold a $ followed by digits other than placeholders.
func (b binder) rebind(q string) string {
	if !b.positional || !strings.Contains(q, "$") {
		return q
	}
	var out strings.Builder
	out.Grow(len(q))
	next := 1
	for i := 0; i < len(q); i++ {
		if q[i] != '$' {
			out.WriteByte(q[i])
			continue
		}
		j := i + 1
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(q[i+1 : j]); err != nil || n != next {
			return q
		}
		next++
		out.WriteByte('?')
		i = j - 1
	}
	return out.String()
}

// sqlDB is the store's connection pools: DB for writes and transactions,
// reads for the queries outside a transaction.
type sqlDB struct {
	*sql.DB
	binder
	// stmts, when set, prepares the transactions' statements once per
	// connection of DB (SQLite).
	stmts *stmtCache
	// reads, when set, is a pool of read-only connections with small page
	// caches for the reads outside a transaction, with its own prepared
	// statements (SQLite, see connectSQLite); nil reads from DB.
	reads *readPool
}

// readPool is a pool of connections for reads and its prepared statements.
type readPool struct {
	db    *sql.DB
	stmts *stmtCache
}

// Close closes the cached statements and the pools.
func (d sqlDB) Close() error {
	var errs []error
	if d.reads != nil {
		errs = append(errs, d.reads.stmts.close(), d.reads.db.Close())
	}
	if d.stmts != nil {
		errs = append(errs, d.stmts.close())
	}
	return errors.Join(append(errs, d.DB.Close())...)
}

// ExecContext runs q with its placeholders rebound.
func (d sqlDB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return d.DB.ExecContext(ctx, d.rebind(q), args...)
}

// QueryContext runs q with its placeholders rebound, prepared if the pool
// caches statements.
func (d sqlDB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = d.rebind(q)
	if st := d.prepared(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.readDB().QueryContext(ctx, q, args...)
}

// QueryRowContext runs q with its placeholders rebound, prepared if the
// pool caches statements.
func (d sqlDB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	q = d.rebind(q)
	if st := d.prepared(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.readDB().QueryRowContext(ctx, q, args...)
}

// readDB is the pool that serves reads outside a transaction.
func (d sqlDB) readDB() *sql.DB {
	if d.reads != nil {
		return d.reads.db
	}
	return d.DB
}

// prepared returns the read q prepared on the pool that serves it, or nil.
func (d sqlDB) prepared(ctx context.Context, q string) *sql.Stmt {
	if d.reads != nil {
		return d.reads.stmts.get(ctx, d.reads.db, q)
	}
	if d.stmts == nil {
		return nil
	}
	return d.stmts.get(ctx, d.DB, q)
}

// ExecContext runs q in the transaction with its placeholders rebound,
// prepared if the pool caches statements.
func (t *tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	q = t.rebind(q)
	if st := t.prepared(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, q, args...)
}

// QueryContext runs q in the transaction with its placeholders rebound,
// prepared if the pool caches statements.
func (t *tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = t.rebind(q)
	if st := t.prepared(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, q, args...)
}

// QueryRowContext runs q in the transaction with its placeholders rebound,
// prepared if the pool caches statements.
func (t *tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	q = t.rebind(q)
	if st := t.prepared(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, q, args...)
}

// prepared returns q's cached statement bound to the transaction: the
// statement stays prepared on each connection it ran on (database/sql
// keeps it there), so a write that recurs at every engine batch is parsed
// once per connection, not per batch.
func (t *tx) prepared(ctx context.Context, q string) *sql.Stmt {
	if t.stmts == nil {
		return nil
	}
	st := t.stmts.get(ctx, t.db, q)
	if st == nil {
		return nil
	}
	return t.Tx.StmtContext(ctx, st)
}
