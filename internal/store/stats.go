package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/otter-ota/otter/internal/ota"
)

// ProductStats is the size of one product's fleet and how much of it is
// online.
type ProductStats struct {
	Product string `json:"product"`
	Devices int64  `json:"devices"`
	Online  int64  `json:"online"`
}

// VersionCount is how many devices of a product report one version of one
// module.
type VersionCount struct {
	Product string `json:"product"`
	Module  string `json:"module"`
	Version string `json:"version"`
	Devices int64  `json:"devices"`
}

// Bounds on the aggregate answers, so that a fleet reporting thousands of
// distinct versions cannot make an answer without end.
const (
	maxStatsProducts = 1000
	maxVersionCounts = 10000
	// failureScan is how many of the newest job events RecentFailures
	// looks through: a bounded scan of the events_kind index, whatever the
	// size of the history.
	failureScan = 5000
)

// Stats answers the read-only fleet aggregates the console draws. They
// read whole tables (a full index scan of 1,000,000 devices), so callers
// cache them rather than asking on every page view.
type Stats interface {
	// ProductStats counts the devices and the online devices of each
	// product, in product order.
	ProductStats(ctx context.Context) ([]ProductStats, error)
	// VersionCounts counts the devices per product, module and reported
	// version, in that order.
	VersionCounts(ctx context.Context) ([]VersionCount, error)
	// RecentFailures returns up to limit failed or timed-out job events,
	// newest first, from among the newest job events.
	RecentFailures(ctx context.Context, limit int) ([]ota.Event, error)
}

// ProductStats counts devices per product; the devices_product_online
// index answers it without reading the table.
func (s *sqlStore) ProductStats(ctx context.Context) ([]ProductStats, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT product, COUNT(*), SUM(CASE WHEN online THEN 1 ELSE 0 END)
		FROM devices GROUP BY product ORDER BY product LIMIT $1`, maxStatsProducts)
	if err != nil {
		return nil, fmt.Errorf("product stats: %w", err)
	}
	defer rows.Close()
	var out []ProductStats
	for rows.Next() {
		var p ProductStats
		if err := rows.Scan(&p.Product, &p.Devices, &p.Online); err != nil {
			return nil, fmt.Errorf("product stats: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// VersionCounts counts devices per product, module and version. A fleet
// of one product (the common case) needs no join: the counts come from a
// scan of the device_versions_lookup index alone, about eight times faster
// on SQLite than the join a fleet of several products needs.
func (s *sqlStore) VersionCounts(ctx context.Context) ([]VersionCount, error) {
	var lo, hi sql.NullString
	// Two subqueries, so that each MIN and MAX is one index lookup.
	err := s.db.QueryRowContext(ctx, `SELECT (SELECT MIN(product) FROM devices), (SELECT MAX(product) FROM devices)`).Scan(&lo, &hi)
	if err != nil {
		return nil, fmt.Errorf("version counts: %w", err)
	}
	if !lo.Valid {
		return nil, nil // no device at all
	}
	q := `SELECT d.product, v.module, v.version, COUNT(*)
		FROM device_versions v JOIN devices d ON d.id = v.device_id
		GROUP BY d.product, v.module, v.version ORDER BY d.product, v.module, v.version LIMIT $1`
	a := args{maxVersionCounts}
	if lo.String == hi.String {
		q = `SELECT CAST($1 AS TEXT), module, version, COUNT(*) FROM device_versions
			GROUP BY module, version ORDER BY module, version LIMIT $2`
		a = args{lo.String, maxVersionCounts}
	}
	return s.versionCounts(ctx, q, a)
}

func (s *sqlStore) versionCounts(ctx context.Context, q string, a args) ([]VersionCount, error) {
	rows, err := s.db.QueryContext(ctx, q, a...)
	if err != nil {
		return nil, fmt.Errorf("version counts: %w", err)
	}
	defer rows.Close()
	var out []VersionCount
	for rows.Next() {
		var c VersionCount
		if err := rows.Scan(&c.Product, &c.Module, &c.Version, &c.Devices); err != nil {
			return nil, fmt.Errorf("version counts: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RecentFailures looks through the newest job events only: a history with
// millions of successes and no failure must not be read to its end.
func (s *sqlStore) RecentFailures(ctx context.Context, limit int) ([]ota.Event, error) {
	if limit <= 0 || limit > MaxPageSize {
		return nil, invalid("invalid limit %d: must be between 1 and %d", limit, MaxPageSize)
	}
	q := `SELECT id, at, actor, kind, action, product, device, firmware_id, task_id, job_id, message, data
		FROM (SELECT * FROM events WHERE kind = $1 ORDER BY id DESC LIMIT $2) recent
		WHERE action IN ($3, $4) ORDER BY id DESC LIMIT $5`
	events, err := queryEvents(ctx, s.db, q, args{ota.KindJob, failureScan, ota.JobFailed, ota.JobTimedOut, limit})
	if err != nil {
		return nil, fmt.Errorf("recent failures: %w", err)
	}
	return events, nil
}
