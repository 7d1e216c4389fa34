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
	s.db.stmts.max = 2
	for range 3 {
		for _, q := range []string{"SELECT $1 + 1", "SELECT $1 + 2", "SELECT $1 + 3"} {
			var n int
			if err := s.db.QueryRowContext(ctx, q, 1).Scan(&n); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	s.db.stmts.mu.Lock()
	cached := len(s.db.stmts.stmts)
	s.db.stmts.mu.Unlock()
	if cached != 2 {
		t.Errorf("%d statements cached, want 2 (the cache's bound)", cached)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if len(s.db.stmts.stmts) != 0 {
		t.Errorf("%d statements left after Close", len(s.db.stmts.stmts))
	}
}
