package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store"
)

// openDatabase opens a server's database without the server: db when
// given, else the SQLite database in the data folder. A data folder
// without one is an error, not a new empty database: a typo would
// otherwise act on a registry no server knows.
func openDatabase(ctx context.Context, data, db string) (store.Store, error) {
	if db == "" {
		if _, err := os.Stat(server.SQLitePath(data)); err != nil {
			return nil, fmt.Errorf("--data %s holds no otter database (%v): give the data folder with --data, or the database with --db", filepath.Clean(data), err)
		}
	}
	st, err := store.Open(ctx, server.DatabaseURL(data, db), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("open the database: %w", err)
	}
	return st, nil
}
