package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgBackends reads the CPU time of the PostgreSQL backends whose
// connections carry the application name app: those of the server under
// measurement. It reads /proc, so it sees them only when PostgreSQL runs
// on this host and its processes are readable; otherwise it reports 0.
type pgBackends struct {
	db  *sql.DB
	app string
}

func newPGBackends(dbURL string) (*pgBackends, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL URL: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &pgBackends{db: stdlib.OpenDB(*cfg), app: "otter-bench-" + hex.EncodeToString(b)}, nil
}

func (p *pgBackends) Close() error { return p.db.Close() }

// withAppName returns dbURL with its connections named app.
func withAppName(dbURL, app string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL URL: %w", err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// backendCPU is the CPU time of each backend, by process id.
type backendCPU map[int]time.Duration

// cpu reads the CPU time of each of the server's backends (nil on a nil
// p, or when none can be read).
func (p *pgBackends) cpu(ctx context.Context) (backendCPU, error) {
	if p == nil {
		return nil, nil
	}
	rows, err := p.db.QueryContext(ctx,
		"SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()", p.app)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL backends: %w", err)
	}
	defer rows.Close()
	out := backendCPU{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			continue // another host's process, or one that just ended
		}
		if err != nil {
			return nil, err
		}
		if out[pid], err = statCPU(stat); err != nil {
			return nil, err
		}
	}
	return out, rows.Err()
}

// since is the CPU time the backends used since before: a backend that
// started since counts from zero; one that ended meanwhile is lost.
func (c backendCPU) since(before backendCPU) time.Duration {
	var d time.Duration
	for pid, t := range c {
		d += t - before[pid]
	}
	return d
}
