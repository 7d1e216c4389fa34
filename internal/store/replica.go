package store

import (
	"context"
	"fmt"
	"time"
)

// Replica is one otter process serving this database, as its last
// heartbeat left it.
type Replica struct {
	ID      string
	URL     string // where the other replicas forward to it
	Version string
	// StartedAt is when the process started, HeartbeatAt its last
	// heartbeat, LeadingSince when it took the scheduler lock (zero when it
	// does not hold it).
	StartedAt, HeartbeatAt, LeadingSince time.Time
}

// Heartbeat records that replica r is alive now: its row is created or
// refreshed, heartbeat_at set to the store's clock. It returns the time
// written.
func (s *sqlStore) Heartbeat(ctx context.Context, r Replica) (time.Time, error) {
	now := s.now()
	var leading any
	if !r.LeadingSince.IsZero() {
		leading = r.LeadingSince.UTC().Truncate(time.Microsecond)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO replicas (id, url, version, started_at, heartbeat_at, leading_since)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET url = excluded.url, version = excluded.version,
			heartbeat_at = excluded.heartbeat_at, leading_since = excluded.leading_since`,
		r.ID, r.URL, r.Version, r.StartedAt.UTC().Truncate(time.Microsecond), now, leading)
	if err != nil {
		return time.Time{}, fmt.Errorf("replica heartbeat: %w", err)
	}
	return now, nil
}

// Replicas lists the replicas whose heartbeat is not older than since,
// the scheduling one (latest leading_since) first, then by id.
func (s *sqlStore) Replicas(ctx context.Context, since time.Time) ([]Replica, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, url, version, started_at, heartbeat_at, leading_since FROM replicas
		WHERE heartbeat_at >= $1 ORDER BY leading_since IS NULL, leading_since DESC, id`, since.UTC())
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	defer rows.Close()
	var out []Replica
	for rows.Next() {
		var r Replica
		var started, beat, leading dbTime
		if err := rows.Scan(&r.ID, &r.URL, &r.Version, &started, &beat, &leading); err != nil {
			return nil, fmt.Errorf("list replicas: %w", err)
		}
		r.StartedAt, r.HeartbeatAt = started.Time, beat.Time
		if leading.Valid {
			r.LeadingSince = leading.Time
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return out, nil
}

// PruneReplicas deletes the rows of replicas whose last heartbeat is
// older than before, and of replica id (a replica that stops cleanly).
func (s *sqlStore) PruneReplicas(ctx context.Context, before time.Time, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE heartbeat_at < $1 OR id = $2`, before.UTC(), id); err != nil {
		return fmt.Errorf("prune replicas: %w", err)
	}
	return nil
}
