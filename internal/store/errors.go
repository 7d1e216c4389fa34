package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/otter-ota/otter/internal/ota"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// PostgreSQL SQLSTATE codes of the constraint violations the store expects.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
)

// isUniqueViolation reports whether err is a unique or primary key
// constraint violation of either database.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == pgUniqueViolation
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		c := sqErr.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKeyViolation reports whether err is a foreign key violation of
// either database: something still refers to a row being deleted, or a new
// row refers to a missing one.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == pgForeignKeyViolation
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

// notFound returns an ENOTFOUND error.
func notFound(format string, a ...any) error {
	return ota.Errorf(ota.ENOTFOUND, format, a...)
}

// conflict returns an ECONFLICT error.
func conflict(format string, a ...any) error {
	return ota.Errorf(ota.ECONFLICT, format, a...)
}

// invalid returns an EINVALID error.
func invalid(format string, a ...any) error {
	return ota.Errorf(ota.EINVALID, format, a...)
}
