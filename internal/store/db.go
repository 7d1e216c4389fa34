package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/crc64"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// dialect names the database behind a store. The SQL is shared; the few
// places where the two differ switch on this value.
type dialect string

const (
	sqliteDialect   dialect = "sqlite"
	postgresDialect dialect = "postgres"
)

// sqliteParams configure every SQLite connection. Transactions begin
// IMMEDIATE because deferred ones that upgrade from read to write fail with
// "database is locked" under concurrency instead of waiting; times are
// written in SQLite's own format so that they sort and compare as text.
// The WAL is copied back into the database (by the committing writer)
// every 10,000 pages rather than 1,000: a page that several commits
// rewrite (the ends of the indexes) is copied once, which halved the
// engine's time in checkpoints. It does not change what a commit makes
// durable.
const sqliteParams = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)" +
	"&_pragma=wal_autocheckpoint(10000)" +
	"&_txlock=immediate&_time_format=sqlite"

// sqliteWriteParams add to sqliteParams for the connections that write
// (transactions and writes outside one). Their page cache is 64 MiB a
// connection (SQLite's default is 2 MiB; a connection only takes what it
// reads): with the default, an engine batch over a table of a million jobs
// spilled dirty pages into the WAL before its commit and read its pages
// back from the file, a third of the CPU of starting jobs in pread and
// pwrite. The caches are not held to a shared limit: with soft_heap_limit
// at 256 MiB, eight readers of a million-row list pushed SQLite past it
// and then into reusing pages under its global allocator lock, and a few
// pages of a list took 170 ms instead of 10 (`otter bench lists`,
// BENCHMARKS.md). (temp_store=MEMORY was tried too: it kept statement
// journals in 1 KiB chunks whose memory went back to the system after
// every statement, which made creating a task's jobs slower.)
const sqliteWriteParams = "&_pragma=cache_size(-65536)"

// sqliteReadParams add to sqliteParams for the pool of reads outside a
// transaction (the lists, the engine's reads): query_only, so that the
// one writer stays the write pool's, and a page cache of SQLite's default
// size, 2 MiB. A connection empties its page cache at the start of a read
// after any other connection committed (WAL mode), which with the engine
// committing continuously is before nearly every read: the pages a read
// needs come from the operating system's file cache either way, and what
// a reader's cache holds between two commits is only ever dropped again.
// (Idle, a page of a list needs a few hundred pages, which 2 MiB holds;
// and this build of SQLite shares one page-cache group between all
// connections, so the size is a soft bound.) See BENCHMARKS.md, "Lists: a
// pool of readers".
const sqliteReadParams = "&_pragma=cache_size(-2000)&_pragma=query_only(1)"

// Option changes how Open sets up a store.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock makes the store read the current time from now instead of the
// system clock, so that tests can move time forward.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// sqlStore implements Store over database/sql for both databases.
type sqlStore struct {
	db      sqlDB
	dialect dialect
	logger  *slog.Logger
	clock   func() time.Time
	// writeLock, for SQLite only, admits one write transaction at a time.
	// SQLite allows a single writer anyway; queueing writers here (fairly,
	// and honouring their contexts) replaces busy-waiting on the file lock,
	// which under heavy load can outlast busy_timeout.
	writeLock chan struct{}
	// writer is the connection of SQLite's write transactions (see
	// beginOnWriter), used and replaced only by the holder of writeLock.
	writer *sql.Conn
	// generic, on PostgreSQL only, is a pool whose connections plan each
	// statement once (plan_cache_mode = force_generic_plan), for the reads
	// whose generic plan is known to be as good as a custom one and whose
	// planning costs several times their execution (see genericPool).
	generic *sql.DB
}

var _ Store = (*sqlStore)(nil)

// Open connects to the database named by rawURL and brings its schema up to
// date. "postgres://..." and "postgresql://..." select PostgreSQL;
// "sqlite:PATH" or a plain file path select SQLite (the file and its folder
// are created if missing). logger may be nil.
func Open(ctx context.Context, rawURL string, logger *slog.Logger, opts ...Option) (Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	s, err := connect(rawURL)
	if err != nil {
		return nil, err
	}
	s.logger, s.clock = logger, o.now
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	logger.Info("database ready", "driver", string(s.dialect))
	return s, nil
}

// connect opens the database/sql handle for rawURL without touching it.
func connect(rawURL string) (*sqlStore, error) {
	if strings.HasPrefix(rawURL, "postgres://") || strings.HasPrefix(rawURL, "postgresql://") {
		return connectPostgres(rawURL)
	}
	path, err := sqlitePath(rawURL)
	if err != nil {
		return nil, err
	}
	return connectSQLite(path)
}

func connectPostgres(rawURL string) (*sqlStore, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, ota.Errorf(ota.EINVALID, "invalid PostgreSQL URL: %v", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &sqlStore{db: sqlDB{DB: db}, dialect: postgresDialect, generic: genericPool(cfg)}, nil
}

// genericPool opens the pool of connections on which PostgreSQL plans a
// prepared statement once, with its parameters unknown, and runs that plan
// for every execution (pgx prepares each statement once per connection).
// By default it plans every execution anew with the parameters' values
// ("custom plans"): it keeps a generic plan only if its estimated cost is
// close to the custom plans', and a parameter LIMIT is priced as a tenth of
// the rows, so a page never gets one. For a device's events, planning the
// two branches and the jobs of the device (and of the devices deleted under
// its key) cost 0.4 to 2.3 ms a page, executing 0.1 ms; for a task's jobs
// in several states 0.25 ms, as much as executing. Their generic plans,
// the same index ranges and joins as the custom ones, run in the same
// time (otter bench lists, BENCHMARKS.md, "Lists on PostgreSQL: round
// trips and plans made once"). Only statements whose plans were checked
// generic go here (TestGenericPlansPostgres): a generic plan can also be a
// poor one (a task's jobs listed by columns an index covers would sort
// the task's every job).
func genericPool(cfg *pgx.ConnConfig) *sql.DB {
	g := cfg.Copy()
	if g.RuntimeParams == nil {
		g.RuntimeParams = map[string]string{}
	}
	g.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	db := stdlib.OpenDB(*g)
	// Connections are opened on first use: a server whose clients never
	// list a device's events holds none.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db
}

// stmtCacheSize bounds the SQLite statements kept prepared: a few dozen
// shapes of reads, with room for the filters' combinations, and the
// multi-row writes of the engine's batches (about a dozen shapes each, see
// chunks).
const stmtCacheSize = 512

func connectSQLite(path string) (*sqlStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database folder: %w", err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteParams+sqliteWriteParams)
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	reads, err := sql.Open("sqlite", path+"?"+sqliteParams+sqliteReadParams)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	// One transaction writes at a time (writeLock); a few more connections
	// serve the writes outside one and the migrations.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	// WAL lets readers run beside the one writer.
	reads.SetMaxOpenConns(16)
	reads.SetMaxIdleConns(16)
	return &sqlStore{db: sqlDB{DB: db, binder: binder{positional: true}, stmts: newStmtCache(stmtCacheSize),
		reads: &readPool{db: reads, stmts: newStmtCache(stmtCacheSize)}},
		dialect: sqliteDialect, writeLock: make(chan struct{}, 1)}, nil
}

// sqlitePath returns the file named by a "sqlite:PATH" URL or a plain path.
func sqlitePath(rawURL string) (string, error) {
	path := rawURL
	if rest, ok := strings.CutPrefix(rawURL, "sqlite:"); ok {
		// sqlite:///abs/path and sqlite://rel/path read like URLs.
		path = strings.TrimPrefix(rest, "//")
	} else if scheme, _, ok := strings.Cut(rawURL, "://"); ok {
		return "", ota.Errorf(ota.EINVALID,
			"unsupported database URL scheme %q: use postgres://..., sqlite:PATH or a file path", scheme)
	}
	switch {
	case path == "":
		return "", ota.Errorf(ota.EINVALID, "database URL %q names no file: use sqlite:PATH, e.g. sqlite:data/otter.db", rawURL)
	case strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:"):
		return "", ota.Errorf(ota.EINVALID, "database %q is not supported: give the path of a file", path)
	case strings.ContainsRune(path, '?'):
		return "", ota.Errorf(ota.EINVALID, "database path %q must not contain '?': otter sets the SQLite options itself", path)
	}
	return path, nil
}

// migrate applies the embedded migrations that the database lacks.
func (s *sqlStore) migrate(ctx context.Context) error { return s.migrateTo(ctx, math.MaxInt64) }

// migrateTo applies the missing migrations up to version.
func (s *sqlStore) migrateTo(ctx context.Context, version int64) error {
	dir, err := fs.Sub(migrations, "migrations/"+string(s.dialect))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true), goose.WithSlog(s.logger)}
	gooseDialect := goose.DialectSQLite3
	if s.dialect == postgresDialect {
		gooseDialect = goose.DialectPostgres
		locker, err := s.migrationLocker(ctx)
		if err != nil {
			return err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(gooseDialect, s.db.DB, dir, opts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := p.UpTo(ctx, version)
	if err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}
	for _, r := range results {
		s.logger.Info("database migrated", "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
}

// migrationLocker serialises replicas that migrate the same PostgreSQL
// schema at once. The lock is per schema so that databases holding several
// schemas (tests, staging) do not wait on one another.
func (s *sqlStore) migrationLocker(ctx context.Context) (lock.SessionLocker, error) {
	var schema string
	if err := s.db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	id := int64(crc64.Checksum([]byte("otter-migrate:"+schema), crc64.MakeTable(crc64.ECMA)))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(id), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	return locker, nil
}

// Ping checks that the database answers.
func (s *sqlStore) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Close releases the database.
func (s *sqlStore) Close() error {
	var err error
	if s.writeLock != nil {
		// Waits a little for a write in progress (a transaction left open
		// must not hang the shutdown: the pool's Close does not wait for
		// it either); a write after Close finds the pool closed when it
		// asks for a new writer connection.
		wait := time.NewTimer(5 * time.Second)
		defer wait.Stop()
		select {
		case s.writeLock <- struct{}{}:
			if s.writer != nil {
				err = s.writer.Close()
				s.writer = nil
			}
			<-s.writeLock
		case <-wait.C:
		}
	}
	if s.generic != nil {
		err = errors.Join(err, s.generic.Close())
	}
	return errors.Join(err, s.db.Close())
}

// now returns the current time as stored: UTC, to the microsecond that
// PostgreSQL keeps, so that a value read back equals the one written.
func (s *sqlStore) now() time.Time {
	return s.clock().UTC().Truncate(time.Microsecond)
}
