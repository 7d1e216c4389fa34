package store

import (
	"context"
	"log/slog"
)

// MigrateTo brings the database at rawURL up to version only, so that a
// test can store rows as an older otter did before a later migration runs.
func MigrateTo(ctx context.Context, rawURL string, version int64) error {
	s, err := connect(rawURL)
	if err != nil {
		return err
	}
	defer s.db.Close()
	s.logger = slog.New(slog.DiscardHandler)
	return s.migrateTo(ctx, version)
}

// ExecAt runs one statement on the database at rawURL.
func ExecAt(ctx context.Context, rawURL, query string, args ...any) error {
	s, err := connect(rawURL)
	if err != nil {
		return err
	}
	defer s.db.Close()
	_, err = s.db.ExecContext(ctx, query, args...)
	return err
}
