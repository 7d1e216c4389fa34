package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// MigrateTo brings the database at rawURL up to version only, so that a
// test can store rows as an older otter did before a later migration runs.
func MigrateTo(ctx context.Context, rawURL string, version int64) error {
	s, err := connect(rawURL)
	if err != nil {
		return err
	}
	defer s.Close()
	s.logger = slog.New(slog.DiscardHandler)
	return s.migrateTo(ctx, version)
}

// ExecAt runs one statement on the database at rawURL.
func ExecAt(ctx context.Context, rawURL, query string, args ...any) error {
	s, err := connect(rawURL)
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.db.ExecContext(ctx, query, args...)
	return err
}

// BackendPIDs returns the process ids of the PostgreSQL backends of the
// connections named app (none on SQLite), for benchmarks that add the
// database's CPU time to their own.
func BackendPIDs(ctx context.Context, st Store, app string) ([]int, error) {
	s, ok := st.(*sqlStore)
	if !ok || s.dialect != postgresDialect {
		return nil, nil
	}
	return queryAll(ctx, s.db, "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
		args{app}, func(row interface{ Scan(...any) error }) (int, error) {
			var pid int
			return pid, row.Scan(&pid)
		})
}

// ExplainJobPage returns the database's plan (EXPLAIN, one line a node)
// of the statement that reads a page of jobs after id after for f, as
// ListJobs would run it (several states: severalStatesQuery).
func ExplainJobPage(ctx context.Context, st Store, f JobFilter, after int64, limit int) (string, error) {
	s := st.(*sqlStore)
	q, a := jobPageQuery(f, after, limit, s.jobCols(), s.dialect)
	if len(f.States) > 1 {
		q, a = severalStatesQuery(f, f.States, after, limit, s.jobCols(), s.dialect)
	}
	lines, err := queryAll(ctx, s.db, "EXPLAIN "+q, a, func(row interface{ Scan(...any) error }) (string, error) {
		var l string
		return l, row.Scan(&l)
	})
	return strings.Join(lines, "\n"), err
}

// ExplainGenericDeviceEvents returns the plan (EXPLAIN, one line a node)
// that a connection of the generic-plan pool runs for a page of the events
// of f's device before id before: the statement prepared, then explained
// as executed with its arguments, so that the plan is the generic one the
// pool keeps (PostgreSQL only).
func ExplainGenericDeviceEvents(ctx context.Context, st Store, f EventFilter, before int64, limit int) (string, error) {
	s := st.(*sqlStore)
	q, a := eventQuery(f, before, limit, s.dialect)
	return explainGeneric(ctx, s, q, a)
}

// ExplainGenericJobPage is ExplainGenericDeviceEvents for a page of jobs
// in several states (severalStatesQuery).
func ExplainGenericJobPage(ctx context.Context, st Store, f JobFilter, after int64, limit int) (string, error) {
	s := st.(*sqlStore)
	q, a := severalStatesQuery(f, f.States, after, limit, s.jobCols(), s.dialect)
	return explainGeneric(ctx, s, q, a)
}

// ExplainGenericOneStatePage is ExplainGenericJobPage for a page of jobs
// in at most one state (jobPageQuery).
func ExplainGenericOneStatePage(ctx context.Context, st Store, f JobFilter, after int64, limit int) (string, error) {
	s := st.(*sqlStore)
	q, a := jobPageQuery(f, after, limit, s.jobCols(), s.dialect)
	return explainGeneric(ctx, s, q, a)
}

// ExplainGenericDevicePage is ExplainGenericDeviceEvents for a page of
// devices (deviceQuery) and for the tags and versions of the devices ids
// (detailsQuery).
func ExplainGenericDevicePage(ctx context.Context, st Store, f DeviceFilter, after int64, limit int, ids []int64) (page, details string, err error) {
	s := st.(*sqlStore)
	q, a := deviceQuery(f, after, limit, s.dialect)
	if page, err = explainGeneric(ctx, s, q, a); err != nil {
		return "", "", err
	}
	var da args
	q = detailsQuery(&da, detailColumns, ids)
	details, err = explainGeneric(ctx, s, q, da)
	return page, details, err
}

func explainGeneric(ctx context.Context, s *sqlStore, q string, a args) (string, error) {
	c, err := s.generic.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "PREPARE otter_explain AS "+q); err != nil {
		return "", err
	}
	defer c.ExecContext(ctx, "DEALLOCATE otter_explain")
	// EXPLAIN EXECUTE takes no parameters: the arguments as literals.
	params := make([]string, len(a))
	for i, v := range a {
		switch v := v.(type) {
		case string:
			params[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		default:
			params[i] = fmt.Sprint(v)
		}
	}
	rows, err := c.QueryContext(ctx, "EXPLAIN EXECUTE otter_explain("+strings.Join(params, ", ")+")")
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return "", err
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n"), rows.Err()
}
