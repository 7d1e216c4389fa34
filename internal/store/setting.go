package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/otter-ota/otter/internal/ota"
)

// kindSetting is the event kind of server-wide settings. Their values are
// often secrets (signing keys), so events name the key only.
const kindSetting = "setting"

// Setting reads a server-wide setting.
func (s *sqlStore) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("setting %q is not set", key)
	} else if err != nil {
		return "", fmt.Errorf("read setting %q: %w", key, err)
	}
	return v, nil
}

// InitSetting stores value under key unless a value is there already, and
// returns the stored value. Racing replicas all get the first one's value.
func (s *sqlStore) InitSetting(ctx context.Context, key, value string) (string, error) {
	if key == "" {
		return "", invalid("a setting needs a key")
	}
	t, err := s.begin(ctx)
	if err != nil {
		return "", err
	}
	defer t.Rollback()
	res, err := t.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`,
		key, value)
	if err != nil {
		return "", fmt.Errorf("init setting %q: %w", key, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		e := ota.Event{Kind: kindSetting, Action: "initialized", Message: fmt.Sprintf("setting %q initialized", key)}
		if err := t.addEvent(ctx, e); err != nil {
			return "", err
		}
	}
	var stored string
	if err := t.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&stored); err != nil {
		return "", fmt.Errorf("init setting %q: %w", key, err)
	}
	if err := t.Commit(); err != nil {
		return "", err
	}
	return stored, nil
}
