package leader

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockSpace is the first half of the advisory lock key ("ottr"); the second
// is a hash of the connection's schema, so that otter installations in
// different schemas of one database (the tests' do) elect separately.
const lockSpace = 0x6f747472

// Postgres elects through a session-level advisory lock held on a
// connection of its own. PostgreSQL releases the lock when that connection
// ends, so when the leader dies (even by SIGKILL) its socket closes and
// another replica takes the lock at its next try.
type Postgres struct {
	// URL is the database, as for the store (its search_path selects the
	// schema, and so the lock).
	URL string
	// Retry is how often a follower tries the lock; 0 means one second.
	Retry time.Duration
	// Check is how often the leader checks that its connection (and so its
	// lock) is still there; 0 means one second. A check that does not
	// answer within 2*Check counts as lost.
	Check  time.Duration
	Logger *slog.Logger
}

func (p *Postgres) retry() time.Duration { return cmp.Or(max(p.Retry, 0), time.Second) }
func (p *Postgres) check() time.Duration { return cmp.Or(max(p.Check, 0), time.Second) }

// FenceWithin is how long a leader that lost its connection may go on
// believing it leads: a new leader waits this long, when the previous one
// may be alive, before it writes.
func (p *Postgres) FenceWithin() time.Duration { return 3 * p.check() }

// Campaign connects and tries the lock every Retry until it holds it. A
// failing database is retried the same way, so a replica recovers by
// itself when PostgreSQL comes back.
func (p *Postgres) Campaign(ctx context.Context, wait bool) (context.Context, func(), error) {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	var conn *pgx.Conn
	for {
		if conn == nil {
			c, err := p.connect(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn("scheduler lock: database unreachable, retrying", "err", err)
			}
			conn = c
			if err != nil && !wait {
				return nil, nil, err
			}
		}
		if conn != nil {
			ok, err := p.try(ctx, conn)
			if ok {
				return p.hold(ctx, conn, log)
			}
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("scheduler lock: try failed, reconnecting", "err", err)
				}
				conn.Close(context.Background())
				conn = nil
				if !wait {
					return nil, nil, err
				}
			}
		}
		if !wait {
			if conn != nil {
				conn.Close(context.Background())
			}
			return nil, nil, ErrNotLeader
		}
		select {
		case <-ctx.Done():
			if conn != nil {
				conn.Close(context.Background())
			}
			return nil, nil, ctx.Err()
		case <-time.After(p.retry()):
		}
	}
}

func (p *Postgres) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(p.URL)
	if err != nil {
		return nil, fmt.Errorf("scheduler lock: %w", err)
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 5*time.Second {
		cfg.ConnectTimeout = 5 * time.Second
	}
	// PostgreSQL releases the lock only when it sees this session end. A
	// holder cut off by the network (not dead: its socket is never closed)
	// would otherwise hold it until the server's TCP keepalive gives up,
	// two hours by default: the server probes this connection after 5 s
	// of silence and drops it about 11 s after the holder went away.
	for name, value := range map[string]string{
		"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3",
		"tcp_user_timeout": "10000",
	} {
		cfg.RuntimeParams[name] = value
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("scheduler lock: connect: %w", err)
	}
	return c, nil
}

func (p *Postgres) try(ctx context.Context, conn *pgx.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*p.check())
	defer cancel()
	var ok bool
	err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, int32(lockSpace)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("scheduler lock: %w", err)
	}
	return ok, nil
}

// hold watches the lock's connection: the first check that fails ends the
// held context, before PostgreSQL could have given the lock to anyone whose
// FenceWithin wait is over.
func (p *Postgres) hold(ctx context.Context, conn *pgx.Conn, log *slog.Logger) (context.Context, func(), error) {
	held, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(p.check())
		defer t.Stop()
		for {
			select {
			case <-held.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(held, 2*p.check())
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && held.Err() == nil {
				log.Error("scheduler lock lost: its database connection failed", "err", err)
				cancel()
				return
			}
		}
	}()
	release := func() {
		cancel()
		<-done
		// Unlock explicitly when the connection still works: closing it
		// would release the lock too, but an explicit unlock is immediate
		// even behind a pooler.
		uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ucancel()
		_, _ = conn.Exec(uctx, `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`, int32(lockSpace))
		_ = conn.Close(uctx)
	}
	return held, release, nil
}
