package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
)

// TestSQLiteReadPool checks that the reads outside a transaction come from
// a pool that cannot write (the write pool's transactions stay the one
// writer) and that they see what the writer committed just before.
func TestSQLiteReadPool(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	if s.db.reads == nil {
		t.Fatal("a SQLite store has no read pool")
	}
	_, err := s.db.reads.db.ExecContext(ctx, "CREATE TABLE scratch (a)")
	if err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Errorf("a write through the read pool: err %v, want a read-only database", err)
	}
	var size int64
	if err := s.db.reads.db.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&size); err != nil {
		t.Fatal(err)
	}
	if size != -2000 {
		t.Errorf("read pool cache_size %d, want -2000 (2 MiB)", size)
	}
	for i, name := range []string{"p1", "p2", "p3"} {
		if err := s.CreateProduct(ota.WithActor(ctx, "op"), &ota.Product{Key: name, Name: name}); err != nil {
			t.Fatal(err)
		}
		got, _, err := s.ListProducts(ctx, Page{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != i+1 {
			t.Errorf("after creating %d products the list holds %d", i+1, len(got))
		}
	}
}

// openSQLite opens a new SQLite store in a temporary folder, closed when
// the test ends.
func openSQLite(t *testing.T) *sqlStore {
	t.Helper()
	st, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "otter.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.(*sqlStore)
}
