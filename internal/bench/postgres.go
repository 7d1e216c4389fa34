package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// isPostgres reports whether a database URL names PostgreSQL.
func isPostgres(dbURL string) bool {
	return strings.HasPrefix(dbURL, "postgres://") || strings.HasPrefix(dbURL, "postgresql://")
}

// FreshSchema creates a schema with a random name in the PostgreSQL
// database at base, so that a benchmark starts empty without touching
// other data, and returns a URL whose connections use it and a function
// that drops it.
func FreshSchema(ctx context.Context, base string) (string, func(context.Context) error, error) {
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL URL: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL URL: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "otter_bench_" + hex.EncodeToString(b)
	if err := execPostgres(ctx, cfg, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	drop := func(ctx context.Context) error { return execPostgres(ctx, cfg, "DROP SCHEMA "+schema+" CASCADE") }
	return u.String(), drop, nil
}

// searchPath is the search_path of a PostgreSQL URL: the schema
// FreshSchema made.
func searchPath(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Query().Get("search_path")
}

// withSearchPath is the PostgreSQL URL u on schema (a schema that a kept
// benchmark left).
func withSearchPath(u, schema string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL URL: %w", err)
	}
	q := p.Query()
	q.Set("search_path", schema)
	p.RawQuery = q.Encode()
	return p.String(), nil
}

func execPostgres(ctx context.Context, cfg *pgx.ConnConfig, stmt string) error {
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("PostgreSQL: %s: %w", stmt, err)
	}
	return nil
}
