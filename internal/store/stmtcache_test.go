package store

import (
	"context"
	"path/filepath"
	"testing"
)

// TestStmtCache checks that reads through the pool are prepared once, that
// a full cache still answers, and that Close closes the statements.
func TestStmtCache(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "otter.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*sqlStore)
	cache := s.db.reads.stmts // reads outside a transaction use the read pool's
	cache.max = 2
	for range 3 {
		for _, q := range []string{"SELECT $1 + 1", "SELECT $1 + 2", "SELECT $1 + 3"} {
			var n int
			if err := s.db.QueryRowContext(ctx, q, 1).Scan(&n); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	cache.mu.Lock()
	cached := len(cache.stmts)
	cache.mu.Unlock()
	if cached != 2 {
		t.Errorf("%d statements cached, want 2 (the cache's bound)", cached)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if len(cache.stmts) != 0 {
		t.Errorf("%d statements left after Close", len(cache.stmts))
	}
}
