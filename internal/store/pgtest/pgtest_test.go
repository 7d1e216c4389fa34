package pgtest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otter-ota/otter/internal/store/pgtest"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// The server keeps its data across a restart, and a session open across it
// is ended.
func TestRestartKeepsDataAndEndsSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs initdb and a PostgreSQL server")
	}
	// Run with the PostgreSQL suites (.ci/run's second pass), like the
	// tests that use this package.
	if os.Getenv(storetest.PostgresEnv) == "" {
		t.Skip("a PostgreSQL test: set " + storetest.PostgresEnv + " (this one starts its own server besides)")
	}
	s := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a session opened before the restart still answers")
	}
	again, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("connect after the restart: %v", err)
	}
	defer again.Close(context.Background())
	var v int
	if err := again.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("after the restart the table holds %d (%v), want 7", v, err)
	}
}
