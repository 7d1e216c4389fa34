// Package storetest opens fresh, migrated stores for tests: a SQLite file in
// the test's temporary folder, or, when OTTER_TEST_POSTGRES_URL is set, a new
// PostgreSQL schema that is dropped when the test ends. Tests of other
// packages use Open; the store's own suite runs every test on each backend.
// Clock is the time a test moves, for the store and what shares its clock.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/otter-ota/otter/internal/store"
)

// PostgresEnv names the environment variable that holds the URL of the
// PostgreSQL database tests use, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "OTTER_TEST_POSTGRES_URL"

// Backend is a database the tests can run on.
type Backend struct {
	// Name is "sqlite" or "postgres", used as the subtest name.
	Name string
	// URL returns the URL of a fresh, empty database for one test.
	URL func(tb testing.TB) string
}

// Backends returns SQLite, and PostgreSQL when OTTER_TEST_POSTGRES_URL is set.
func Backends() []Backend {
	b := []Backend{{Name: "sqlite", URL: SQLiteURL}}
	if base := os.Getenv(PostgresEnv); base != "" {
		b = append(b, Backend{Name: "postgres", URL: func(tb testing.TB) string { return PostgresURL(tb, base) }})
	}
	return b
}

// URL returns the URL of a fresh, empty database for one test: PostgreSQL
// when OTTER_TEST_POSTGRES_URL is set, SQLite otherwise.
func URL(tb testing.TB) string {
	b := Backends()
	return b[len(b)-1].URL(tb)
}

// Open returns a fresh, migrated store (see URL), closed when the test ends.
func Open(tb testing.TB, opts ...store.Option) store.Store {
	tb.Helper()
	return OpenURL(tb, URL(tb), opts...)
}

// OpenURL opens the store at rawURL, failing the test if it cannot, and
// closes it when the test ends.
func OpenURL(tb testing.TB, rawURL string, opts ...store.Option) store.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, rawURL, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// SQLiteURL returns the URL of a new SQLite file in the test's temporary
// folder.
func SQLiteURL(tb testing.TB) string {
	return "sqlite:" + filepath.Join(tb.TempDir(), "otter.db")
}

// PostgresURL creates a schema with a random name in the database at base
// and returns a URL whose connections use it; the schema is dropped when the
// test ends. An unreachable database fails the test: a configured backend
// that silently skips would hide every failure.
func PostgresURL(tb testing.TB, base string) string {
	tb.Helper()
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		tb.Fatalf("%s: %v", PostgresEnv, err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	schema := "otter_test_" + randomHex(tb)
	exec(tb, db, "CREATE SCHEMA "+schema)
	tb.Cleanup(func() { dropSchema(tb, base, schema) })
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("%s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func dropSchema(tb testing.TB, base, schema string) {
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		tb.Errorf("%s: %v", PostgresEnv, err)
		return
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	exec(tb, db, "DROP SCHEMA "+schema+" CASCADE")
}

func exec(tb testing.TB, db *sql.DB, stmt string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		tb.Fatalf("PostgreSQL at %s: %s: %v", PostgresEnv, stmt, err)
	}
}

func randomHex(tb testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}
