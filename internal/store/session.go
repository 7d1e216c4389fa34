package store

import (
	"context"
	"fmt"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// EndSession stores the id of a signed-out console session until it would
// have expired: the cookie stays valid cryptographically, so every replica
// must be able to tell it was ended.
func (s *sqlStore) EndSession(ctx context.Context, id []byte, expires time.Time, e ota.Event) error {
	if len(id) == 0 {
		return invalid("a session needs an id")
	}
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	if _, err := t.ExecContext(ctx, `DELETE FROM ended_sessions WHERE expires_at <= $1`, t.now); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if _, err := t.ExecContext(ctx, `INSERT INTO ended_sessions (id, expires_at) VALUES ($1, $2)
		ON CONFLICT (id) DO NOTHING`, id, expires.UTC()); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if err := t.addEvent(ctx, e); err != nil {
		return err
	}
	return t.Commit()
}

// SessionEnded reports whether the session id was signed out.
func (s *sqlStore) SessionEnded(ctx context.Context, id []byte) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM ended_sessions WHERE id = $1`, id).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read ended sessions: %w", err)
	}
	return n > 0, nil
}

// RecordEvent records one event on its own.
func (s *sqlStore) RecordEvent(ctx context.Context, e ota.Event) error {
	if e.Kind == "" || e.Action == "" {
		return invalid("an event needs a kind and an action")
	}
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	if err := t.addEvent(ctx, e); err != nil {
		return err
	}
	return t.Commit()
}
