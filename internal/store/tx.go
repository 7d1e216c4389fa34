package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// querier is what reads and writes need from a database handle: both
// *sql.DB and *tx satisfy it, so one helper serves plain reads and the
// reads a transaction makes before it writes.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// tx is the read-write transaction of one store method, with what every
// change records: when it happens and who makes it. Use it as
//
//	t, err := s.begin(ctx)
//	if err != nil { return err }
//	defer t.Rollback()
//	... t.ExecContext, t.addEvent ...
//	return t.Commit()
type tx struct {
	*sql.Tx
	binder
	// db and stmts keep the transaction's statements prepared (SQLite).
	db      *sql.DB
	stmts   *stmtCache
	dialect dialect
	// conn is the connection of a transaction begun by beginUnchecked, for
	// what database/sql cannot do (PostgreSQL's COPY).
	conn    *sql.Conn
	now     time.Time
	actor   string
	release func()
}

// begin starts a write transaction. Pure reads do not use one: on SQLite
// every transaction takes the write lock at BEGIN (IMMEDIATE).
func (s *sqlStore) begin(ctx context.Context) (*tx, error) {
	release, err := s.acquireWrite(ctx)
	if err != nil {
		return nil, err
	}
	var sqlTx *sql.Tx
	if s.dialect == sqliteDialect {
		sqlTx, err = s.beginOnWriter(ctx)
	} else {
		sqlTx, err = s.db.BeginTx(ctx, nil)
	}
	if err != nil {
		release()
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	return &tx{Tx: sqlTx, binder: s.db.binder, db: s.db.DB, stmts: s.db.stmts, dialect: s.dialect, now: s.now(), actor: ota.ActorFrom(ctx), release: release}, nil
}

// beginOnWriter begins a SQLite write transaction on the store's writer
// connection, taken from the pool at the first write and kept. The caller
// holds the write slot, which guards s.writer. On one connection, every
// statement shape of the engine's batches is prepared once (on 16 pooled
// connections it was prepared up to 16 times, 5 % of the server's CPU in a
// 2,000-device fleet), and the connection's page cache stays valid from
// one commit to the next: SQLite empties a connection's cache when another
// connection has written since its last transaction, so a write landing on
// a reader's connection read its pages back from the file. A connection
// that broke is closed and replaced once.
func (s *sqlStore) beginOnWriter(ctx context.Context) (*sql.Tx, error) {
	for try := 0; ; try++ {
		if s.writer == nil {
			c, err := s.db.Conn(ctx)
			if err != nil {
				return nil, err
			}
			s.writer = c
		}
		t, err := s.writer.BeginTx(ctx, nil)
		if err == nil || try > 0 || !(errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)) {
			return t, err
		}
		s.writer.Close()
		s.writer = nil
	}
}

// beginUnchecked is begin on a connection whose foreign key checks are
// off for the transaction, for SQLite: for writes whose every reference
// the transaction itself has just made or checked. A multi-row INSERT into
// a table with a foreign key may stop half-way on a violation, so SQLite
// copies every existing page the statement changes into a statement
// journal first: a third of the CPU of storing a new task's jobs when
// their (device, module) and (device, id) index entries landed all over
// their indexes (before migration 00014). The pragma can change only outside a transaction; it is set
// back when the transaction ends, and a connection that cannot be set
// back is closed rather than returned to the pool. On PostgreSQL, whose
// checks cost no journal, the transaction keeps them and its connection
// is at hand for COPY (tx.conn).
func (s *sqlStore) beginUnchecked(ctx context.Context) (*tx, error) {
	release, err := s.acquireWrite(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		release()
		return nil, fmt.Errorf("take a connection: %w", err)
	}
	done := func() {
		conn.Close()
		release()
	}
	if s.dialect == sqliteDialect {
		done = func() {
			restoreForeignKeys(conn)
			release()
		}
		if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
			done()
			return nil, fmt.Errorf("foreign keys off: %w", err)
		}
	}
	sqlTx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		done()
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	return &tx{Tx: sqlTx, binder: s.db.binder, db: s.db.DB, stmts: s.db.stmts, dialect: s.dialect, conn: conn,
		now: s.now(), actor: ota.ActorFrom(ctx), release: done}, nil
}

// restoreForeignKeys turns the connection's foreign key checks back on
// (which also expires the statements prepared on it without them) and
// returns it to the pool, or closes it if that fails.
func restoreForeignKeys(conn *sql.Conn) {
	if _, err := conn.ExecContext(context.Background(), "PRAGMA foreign_keys = ON"); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	conn.Close()
}

// acquireWrite waits for SQLite's single write slot; PostgreSQL needs none.
func (s *sqlStore) acquireWrite(ctx context.Context) (func(), error) {
	if s.writeLock == nil {
		return func() {}, nil
	}
	select {
	case s.writeLock <- struct{}{}:
		return func() { <-s.writeLock }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the database: %w", ctx.Err())
	}
}

// Commit commits the transaction and frees the write slot.
func (t *tx) Commit() error {
	defer t.done()
	if err := t.Tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Rollback abandons the transaction unless it was committed, and frees the
// write slot; it is meant to be deferred right after begin.
func (t *tx) Rollback() error {
	defer t.done()
	return t.Tx.Rollback()
}

func (t *tx) done() {
	if t.release != nil {
		t.release()
		t.release = nil
	}
}

// eventColumns are the columns addEvents fills, in order.
const eventColumns = "at, actor, kind, action, product, device, firmware_id, task_id, job_id, message, data"

// addEvent records e in the transaction, stamped with its time and actor.
func (t *tx) addEvent(ctx context.Context, e ota.Event) error {
	return t.addEvents(ctx, []ota.Event{e})
}

// addEvents records events with multi-row INSERTs; an event without an actor
// or a time gets the transaction's. An event keeps its own time: the engine
// decides at one instant (a retry's backoff counts from it) and may commit
// a little later, and the history must show when things happened.
func (t *tx) addEvents(ctx context.Context, events []ota.Event) error {
	if t.dialect == postgresDialect && len(events) > 0 {
		return t.addEventsUnnest(ctx, events)
	}
	const cols = 11
	for _, chunk := range chunks(events, cols) {
		a := make(args, 0, len(chunk)*cols)
		for _, e := range chunk {
			at, actor := t.eventStamp(e)
			a = append(a, at, actor, e.Kind, e.Action, e.Product, e.Device,
				nullID(e.FirmwareID), nullID(e.TaskID), nullID(e.JobID), e.Message, encodeMap(e.Data))
		}
		q := "INSERT" + t.orRollback() + " INTO events (" + eventColumns + ") VALUES " + values(len(chunk), cols)
		if _, err := t.ExecContext(ctx, q, a...); err != nil {
			return fmt.Errorf("record event: %w", err)
		}
	}
	return nil
}

// args collects the arguments of a query built piece by piece and hands out
// their placeholders ($N works on both databases).
type args []any

// add appends v and returns its placeholder.
func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// in appends vs and returns the placeholder list for an IN (...) clause.
func in[T any](a *args, vs []T) string {
	ph := make([]string, len(vs))
	for i, v := range vs {
		ph[i] = a.add(v)
	}
	return strings.Join(ph, ", ")
}

// inPadded is in for an IN list whose length varies from call to call:
// it repeats the last value up to the next power of two, so that the
// query takes one of a few shapes that stay prepared (see stmtCache).
func inPadded[T any](a *args, vs []T) string {
	if len(vs) == 0 {
		return in(a, vs)
	}
	n := 1
	for n < len(vs) {
		n *= 2
	}
	if n > maxParams {
		return in(a, vs)
	}
	padded := make([]T, n)
	copy(padded, vs)
	for i := len(vs); i < n; i++ {
		padded[i] = vs[len(vs)-1]
	}
	return in(a, padded)
}

// values returns the VALUES list of a multi-row INSERT: ($1, $2), ($3, $4).
// It is written into one buffer sized up front (a string per placeholder
// was a tenth of the CPU of building a batch's statements).
func values(rows, cols int) string { return valuesAfter(rows, cols, 0) }

// valuesAfter is values with the placeholders numbered after the first
// given ones: ($3, $4), ($5, $6) after 2.
func valuesAfter(rows, cols, after int) string {
	b := make([]byte, 0, rows*(cols*8+2))
	n := int64(after)
	for r := range rows {
		if r > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '(')
		for c := range cols {
			if c > 0 {
				b = append(b, ", "...)
			}
			n++
			b = strconv.AppendInt(append(b, '$'), n, 10)
		}
		b = append(b, ')')
	}
	return string(b)
}

// maxParams bounds the parameters of one statement, well under SQLite's
// (32766) and PostgreSQL's (65535) limits.
const maxParams = 10000

// chunks splits items into runs that fit one statement of cols parameters
// per item. Every run's length is a power of two (the largest that fits,
// then smaller ones for the rest: 1,000 items are 512 + 256 + 128 + 64 +
// 32 + 8), so that a multi-row statement takes one of a few shapes that
// stay prepared (see stmtCache) instead of being parsed again for every
// batch: in the pure-Go SQLite, parsing a statement of a few hundred rows
// costs as much as running it.
func chunks[T any](items []T, cols int) [][]T {
	size := 1
	for size*2*max(1, cols) <= maxParams {
		size *= 2
	}
	var out [][]T
	for len(items) > 0 {
		n := size
		for n > len(items) {
			n /= 2
		}
		out = append(out, items[:n])
		items = items[n:]
	}
	return out
}

// eventStamp is the time and actor an event is recorded with: its own,
// else the transaction's.
func (t *tx) eventStamp(e ota.Event) (time.Time, string) {
	at, actor := e.At, e.Actor
	if at.IsZero() {
		at = t.now
	}
	if actor == "" {
		actor = t.actor
	}
	return at, actor
}

// orRollback is the conflict clause of the multi-row writes of a batch:
// " OR ROLLBACK" on SQLite, nothing on PostgreSQL. A statement that may
// stop half-way with the default clause (ABORT: any NOT NULL or UNIQUE
// constraint) makes SQLite copy every page it changes into a statement
// journal first, to undo just that statement; these statements' callers
// abandon the whole transaction on any error anyway, and with ROLLBACK
// SQLite undoes the transaction itself and keeps no statement journal: it
// was a quarter of the CPU of creating a task's jobs (its memory going
// back to the system after every statement).
func (t *tx) orRollback() string {
	if t.dialect == sqliteDialect {
		return " OR ROLLBACK"
	}
	return ""
}

// typed returns a placeholder with the SQL type PostgreSQL needs to read a
// parameter inside VALUES (where it cannot infer one). SQLite gets the bare
// placeholder: its CAST would apply type affinity (a TIMESTAMP cast turns
// "2026-11-27 ..." into the number 2026).
func (t *tx) typed(placeholder, sqlType string) string {
	if t.dialect == postgresDialect {
		return "CAST(" + placeholder + " AS " + sqlType + ")"
	}
	return placeholder
}

// queryAll runs a SELECT and reads every row with scan.
func queryAll[T any](ctx context.Context, q querier, query string, a args, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	return queryCap(ctx, q, query, a, 0, scan)
}

// queryCap is queryAll for about n rows (a page): the slice of a page of
// jobs grown from empty copied them seven times.
func queryCap[T any](ctx context.Context, q querier, query string, a args, n int, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, a...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]T, 0, n)
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
