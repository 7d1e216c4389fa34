package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// JobFilter narrows a job list. Zero fields do not filter.
type JobFilter struct {
	TaskID   int64
	DeviceID int64
	States   []ota.JobState
}

// jobColumns are the job columns jobRow reads, in order.
const jobColumns = `j.id, j.task_id, j.device_id, j.device, j.product, j.module, j.state, j.percent, j.attempt,
	j.code, j.message, j.phase, j.from_version, j.version, j.created_at, j.updated_at, j.started_at, j.deadline,
	j.next_attempt_at, j.sent_at, j.rev`

// activeStates is the SQL list of non-terminal job states.
const activeStates = `('awaiting_version', 'queued', 'notified', 'offered', 'accepted', 'downloading', 'downloaded', 'awaiting_install_confirmation', 'installing', 'rebooting')`

// failedStates is the SQL list of the states of failure, exactly as the
// partial index jobs_task_failed (migration 00009 on SQLite, 00012 on
// PostgreSQL) states it: a query names it so that the database knows the
// index covers its rows.
const failedStates = `('failed', 'rejected', 'timed_out')`

// coveredState reports whether jobs_task_failed holds the jobs in st.
func coveredState(st ota.JobState) bool {
	return st == ota.JobFailed || st == ota.JobRejected || st == ota.JobTimedOut
}

// jobListColumns are jobColumns packed into one column (packColumns), as
// the lists read them on SQLite.
var jobListColumns = packColumns(jobColumns,
	"j.device", "j.product", "j.module", "j.state", "j.code", "j.message", "j.from_version", "j.version")

// jobColumnCount is the number of jobColumns.
const jobColumnCount = 21

// jobRow reads rows of jobColumns, and extra columns after them, into
// values reused from row to row (see rowValues).
type jobRow struct{ *rowValues }

func newJobRow(extra int) jobRow { return jobRow{newRowValues(jobColumnCount + extra)} }

func (r jobRow) scan(row interface{ Scan(...any) error }) (ota.Job, error) {
	if err := r.rowValues.scan(row); err != nil {
		return ota.Job{}, err
	}
	j := ota.Job{ID: r.int64(0), TaskID: r.int64(1), DeviceID: r.int64(2), Device: r.str(3), Product: r.str(4),
		Module: r.str(5), State: ota.JobState(r.str(6)), Percent: r.int(7), Attempt: r.int(8), Code: r.str(9),
		Message: r.str(10), Phase: ota.PhaseIndex(r.int(11)), FromVersion: r.str(12), Version: r.str(13), Rev: r.int64(20)}
	created, updated := r.time(14), r.time(15)
	j.StartedAt, j.Deadline, j.NextAttemptAt, j.SentAt = r.time(16).ptr(), r.time(17).ptr(), r.time(18).ptr(), r.time(19).ptr()
	if r.err != nil {
		return ota.Job{}, fmt.Errorf("job %d: %w", j.ID, r.err)
	}
	if !created.Valid || !updated.Valid {
		return j, fmt.Errorf("job %d has no creation or update time", j.ID)
	}
	j.CreatedAt, j.UpdatedAt = created.Time.UTC(), updated.Time.UTC()
	return j, nil
}

func queryJobs(ctx context.Context, q querier, query string, a args) ([]ota.Job, error) {
	return queryCap(ctx, q, query, a, 0, newJobRow(0).scan)
}

// byIDs runs query once per chunk of ids, the query's "%s" standing for
// the placeholder list.
func byIDs(ctx context.Context, q querier, query string, ids []int64) ([]ota.Job, error) {
	var out []ota.Job
	for _, chunk := range chunks(ids, 1) {
		var a args
		jobs, err := queryJobs(ctx, q, fmt.Sprintf(query, in(&a, chunk)), a)
		if err != nil {
			return nil, err
		}
		out = append(out, jobs...)
	}
	return out, nil
}

// ActiveJobs returns the non-terminal jobs of the given devices.
func (s *sqlStore) ActiveJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error) {
	jobs, err := byIDs(ctx, s.db, "SELECT "+jobColumns+" FROM active_jobs a JOIN jobs j ON j.id = a.job_id WHERE a.device_id IN (%s)", deviceIDs)
	if err != nil {
		return nil, fmt.Errorf("active jobs: %w", err)
	}
	return jobs, nil
}

// OrphanJobs returns up to limit active jobs whose device was deleted.
func (s *sqlStore) OrphanJobs(ctx context.Context, limit int) ([]ota.Job, error) {
	jobs, err := queryJobs(ctx, s.db, "SELECT "+jobColumns+" FROM active_jobs a JOIN jobs j ON j.id = a.job_id"+
		" WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = a.device_id) ORDER BY j.id LIMIT $1", args{limit})
	if err != nil {
		return nil, fmt.Errorf("jobs of deleted devices: %w", err)
	}
	return jobs, nil
}

// LastJobs returns the newest job of each device and module of the given
// devices, whatever its state: a poll reads it to repeat a cancel.
func (s *sqlStore) LastJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error) {
	jobs, err := byIDs(ctx, s.db, "SELECT "+jobColumns+" FROM jobs j WHERE j.id IN "+
		"(SELECT MAX(job_id) FROM job_devices WHERE device_id IN (%s) GROUP BY device_id, module)", deviceIDs)
	if err != nil {
		return nil, fmt.Errorf("last jobs: %w", err)
	}
	return jobs, nil
}

// ExistingDevices returns which of the given devices exist.
func (s *sqlStore) ExistingDevices(ctx context.Context, deviceIDs []int64) (map[int64]bool, error) {
	out := make(map[int64]bool, len(deviceIDs))
	for _, chunk := range chunks(deviceIDs, 1) {
		var a args
		ids, err := queryAll(ctx, s.db, "SELECT id FROM devices WHERE id IN ("+in(&a, chunk)+")", a,
			func(row interface{ Scan(...any) error }) (int64, error) {
				var id int64
				return id, row.Scan(&id)
			})
		if err != nil {
			return nil, fmt.Errorf("existing devices: %w", err)
		}
		for _, id := range ids {
			out[id] = true
		}
	}
	return out, nil
}

// JobsByID returns the jobs with the given ids (missing ids are skipped).
func (s *sqlStore) JobsByID(ctx context.Context, ids []int64) ([]ota.Job, error) {
	jobs, err := byIDs(ctx, s.db, "SELECT "+jobColumns+" FROM jobs j WHERE j.id IN (%s)", ids)
	if err != nil {
		return nil, fmt.Errorf("jobs by id: %w", err)
	}
	return jobs, nil
}

// GetJob returns one job.
func (s *sqlStore) GetJob(ctx context.Context, id int64) (ota.Job, error) {
	jobs, err := s.JobsByID(ctx, []int64{id})
	if err != nil {
		return ota.Job{}, err
	}
	if len(jobs) == 0 {
		return ota.Job{}, notFound("job %d does not exist", id)
	}
	return jobs[0], nil
}

// ListJobs pages through jobs in id order.
func (s *sqlStore) ListJobs(ctx context.Context, f JobFilter, page Page) ([]ota.Job, string, error) {
	limit, err := pageLimit(page)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeIDCursor(page.After)
	if err != nil {
		return nil, "", err
	}
	if len(f.States) > 1 {
		return s.mergedJobPage(ctx, f, after, limit)
	}
	jobs, err := s.jobPage(ctx, f, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	jobs, next := cutPage(jobs, limit, func(j ota.Job) string { return idKey(j.ID) })
	return jobs, next, nil
}

// mergedJobPage reads a page for several states in one statement: one
// page per state, each a range of the (task_id, state, id) index (where
// "state IN (...) ORDER BY id" would sort every matching job), and the
// first of all of them in id order (severalStatesQuery: on SQLite their
// ids, then their rows by id; on PostgreSQL their rows). One statement
// reads one snapshot, so a
// job that changes state meanwhile cannot leave the page short. On
// SQLite, a list of states of failure only reads its rows from the
// covering index jobs_task_failed instead (coveredJobPage): those jobs
// lie a table page apart, where the covering index holds them side by
// side.
func (s *sqlStore) mergedJobPage(ctx context.Context, f JobFilter, after int64, limit int) ([]ota.Job, string, error) {
	states := slices.Compact(slices.Sorted(slices.Values(f.States)))
	if s.dialect == sqliteDialect && f.TaskID != 0 && !slices.ContainsFunc(states, func(st ota.JobState) bool { return !coveredState(st) }) {
		return s.coveredJobPage(ctx, f, states, after, limit)
	}
	q, a := severalStatesQuery(f, states, after, limit+1, s.jobCols(), s.dialect)
	// Planned anew, a task's page cost PostgreSQL as much to plan as to
	// run (0.25 ms each at 1,000,000 jobs); its generic plan is the same
	// (TestGenericPlansPostgres). The other filters' plans were not
	// checked generic.
	var db querier = s.db
	if s.generic != nil && f.TaskID != 0 && f.DeviceID == 0 {
		db = sqlDB{DB: s.generic}
	}
	jobs, err := queryCap(ctx, db, q, a, limit+1, s.jobListRow().scan)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	jobs, next := cutPage(jobs, limit, func(j ota.Job) string { return idKey(j.ID) })
	return jobs, next, nil
}

// severalStatesQuery selects cols of up to limit jobs after id after in
// any of states, in id order.
//
// SQLite reads the ids of up to limit jobs of each state (jobPageQuery's
// index range), then the rows of the first limit of those ids by primary
// key; it walks the list of ids in order, so neither the ids nor the rows
// are sorted, and it stops after limit rows.
//
// PostgreSQL reads up to limit rows of each state from its own index
// range (statesBranch), whole rows, and keeps the first limit of them:
// a top-N sort of at most limit times the number of states rows, and no
// row looked up by its id. At 1,000,000 jobs a page of succeeded and
// failed jobs read 24 buffers in 0.35 ms this way, where the ids merged
// first and their rows looked up by primary key read 426 in 0.78-1.0 ms
// (EXPLAIN ANALYZE, generic plans).
func severalStatesQuery(f JobFilter, states []ota.JobState, after int64, limit int, cols string, d dialect) (string, args) {
	var a args
	if d == postgresDialect {
		// Each parameter once, each branch naming it.
		p := statesParams{after: a.add(after), limit: a.add(limit)}
		if f.TaskID != 0 {
			p.task = a.add(f.TaskID)
		}
		if f.DeviceID != 0 {
			p.device = a.add(f.DeviceID)
		}
		parts := make([]string, len(states))
		for i, st := range states {
			parts[i] = statesBranch(&a, p, st, cols)
		}
		return "SELECT * FROM (" + strings.Join(parts, " UNION ALL ") + ") AS u ORDER BY id LIMIT " + p.limit, a
	}
	parts := make([]string, len(states))
	for i, st := range states {
		one := f
		one.States = []ota.JobState{st}
		parts[i] = "SELECT id FROM (" + jobPageSQL(&a, one, after, limit, "j.id AS id", d) + ") AS s" + strconv.Itoa(i)
	}
	return "SELECT " + cols + " FROM jobs j WHERE j.id IN (" + strings.Join(parts, " UNION ALL ") +
		") ORDER BY j.id LIMIT " + a.add(limit), a
}

// statesParams are the placeholders of severalStatesQuery's parameters on
// PostgreSQL ("" for a filter not given).
type statesParams struct{ after, limit, task, device string }

// statesBranch is the part of severalStatesQuery that reads up to a page
// of the jobs in state st on PostgreSQL, as jobPageSQL would. A task's
// branch orders by (state, id) with the state a range (indexedEq), which
// only the index (task_id, state, id) yields without a sort: with the
// state an equality and "ORDER BY id", the planner may prefer the
// primary key in id order with the task and the state as a filter
// (seen at 50,000 jobs), which for a sparse state reads on to the end of
// the table.
func statesBranch(a *args, p statesParams, st ota.JobState, cols string) string {
	where := []string{"j.id > " + p.after}
	order := "j.id"
	switch {
	case p.task != "":
		where = append(where, "j.task_id = "+p.task)
		var cond string
		cond, order = indexedEq(postgresDialect, "j.state", stateValue(a, st), "j.id")
		where = append(where, cond)
		if coveredState(st) {
			// Implies the partial index jobs_task_failed, which covers
			// the rows: no row lookups.
			where = append(where, "j.state IN "+failedStates)
		}
	default:
		where = append(where, "j.state = "+stateValue(a, st))
	}
	if p.device != "" {
		where = append(where, "j.device_id = "+p.device)
	}
	return "(SELECT " + cols + " FROM jobs j WHERE " + strings.Join(where, " AND ") + " ORDER BY " + order + " LIMIT " + p.limit + ")"
}

// coveredJobPage reads a page for several states of failure (SQLite): the
// ids of one page per state, merged in id order; then a state with
// coveredMin jobs or more on the page reads them in one range of the
// covering index jobs_task_failed (a few consecutive index pages, where
// rows by id lie a table page apart), and fewer, which cost less as row
// lookups than as a statement of their own, are read by id.
func (s *sqlStore) coveredJobPage(ctx context.Context, f JobFilter, states []ota.JobState, after int64, limit int) ([]ota.Job, string, error) {
	type stateID struct {
		id    int64
		state int
	}
	var ids []stateID
	for k, st := range states {
		one := f
		one.States = []ota.JobState{st}
		q, a := jobPageQuery(one, after, limit+1, "j.id", s.dialect)
		got, err := queryAll(ctx, s.db, q, a, func(row interface{ Scan(...any) error }) (stateID, error) {
			v := stateID{state: k}
			return v, row.Scan(&v.id)
		})
		if err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		ids = append(ids, got...)
	}
	slices.SortFunc(ids, func(a, b stateID) int { return cmp.Compare(a.id, b.id) })
	next := ""
	if len(ids) > limit {
		ids = ids[:limit]
		next = encodeCursor(idKey(ids[limit-1].id))
	}
	if len(ids) == 0 {
		return nil, "", nil
	}
	last := ids[len(ids)-1].id
	perState := make([]int, len(states))
	for _, v := range ids {
		perState[v.state]++
	}
	var jobs []ota.Job
	var byRow []int64
	var rowStates []ota.JobState
	for k, st := range states {
		if perState[k] >= coveredMin {
			one := f
			one.States = []ota.JobState{st}
			got, err := s.jobPage(ctx, one, after, perState[k])
			if err != nil {
				return nil, "", fmt.Errorf("list jobs: %w", err)
			}
			if jobs == nil {
				jobs = make([]ota.Job, 0, len(ids))
			}
			// A job that left the state since its id was read lets one
			// of the state's jobs beyond the page in: it is left out.
			for _, j := range got {
				if j.ID <= last {
					jobs = append(jobs, j)
				}
			}
			continue
		}
		if perState[k] > 0 {
			rowStates = append(rowStates, st)
		}
	}
	for _, v := range ids {
		if slices.Contains(rowStates, states[v.state]) {
			byRow = append(byRow, v.id)
		}
	}
	if len(byRow) > 0 {
		got, err := s.jobsByRow(ctx, byRow, rowStates)
		if err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		if jobs == nil {
			return got, next, nil // no copy
		}
		jobs = append(jobs, got...)
		slices.SortFunc(jobs, func(a, b ota.Job) int { return cmp.Compare(a.ID, b.ID) })
	}
	return jobs, next, nil
}

// coveredMin is how many jobs of a state of failure a page of several
// states needs to read them from jobs_task_failed rather than by row.
const coveredMin = 10

// jobsByRow reads the jobs of ids (sorted) that are in one of states, in
// id order (SQLite). A job that changed state since its id was read may
// have left the filter: it is left out, and the page is one short.
func (s *sqlStore) jobsByRow(ctx context.Context, ids []int64, states []ota.JobState) ([]ota.Job, error) {
	var a args
	// One JSON text, not 100 parameters: binding each is a call into
	// SQLite with its mutex, and a boxed value in database/sql.
	list := make([]byte, 0, 12*len(ids))
	for i, id := range ids {
		if i > 0 {
			list = append(list, ',')
		}
		list = strconv.AppendInt(list, id, 10)
	}
	byID := "j.id IN (SELECT value FROM json_each(" + a.add("["+string(list)+"]") + "))"
	q := "SELECT " + s.jobCols() + " FROM jobs j WHERE " + byID +
		" AND j.state IN (" + stateList(&a, states) + ") ORDER BY j.id"
	return queryCap(ctx, s.db, q, a, len(ids), s.jobListRow().scan)
}

// jobPage reads up to limit jobs after id after, in id order, for at most
// one state.
func (s *sqlStore) jobPage(ctx context.Context, f JobFilter, after int64, limit int) ([]ota.Job, error) {
	q, a := jobPageQuery(f, after, limit, s.jobCols(), s.dialect)
	// A task's page, with or without a state, planned anew cost
	// PostgreSQL 0.27 ms at 1,000,000 jobs (nine indexes to weigh), twice
	// its execution; its generic plan is the custom one
	// (TestGenericPlansPostgres).
	var db querier = s.db
	if s.generic != nil && f.TaskID != 0 && f.DeviceID == 0 {
		db = sqlDB{DB: s.generic}
	}
	return queryCap(ctx, db, q, a, limit, s.jobListRow().scan)
}

// jobPageQuery selects cols of up to limit jobs after id after, in id
// order, for at most one state: every filter it gets is served in order by
// an index, (task_id, id), (task_id, state, id), or job_devices' key
// (device_id, job_id).
func jobPageQuery(f JobFilter, after int64, limit int, cols string, d dialect) (string, args) {
	var a args
	return jobPageSQL(&a, f, after, limit, cols, d), a
}

// jobPageSQL is jobPageQuery with its parameters added to a.
func jobPageSQL(a *args, f JobFilter, afterID int64, limit int, cols string, d dialect) string {
	after := a.add(afterID)
	where := []string{"j.id > " + after}
	order, from := "j.id", "jobs j"
	switch {
	case f.TaskID != 0 && len(f.States) > 0:
		where = append(where, "j.task_id = "+a.add(f.TaskID))
		var cond string
		cond, order = indexedEq(d, "j.state", stateValue(a, f.States[0]), "j.id")
		where = append(where, cond)
		if coveredState(f.States[0]) {
			// Implies the partial index jobs_task_failed, which covers
			// the page: no row lookups.
			where = append(where, "j.state IN "+failedStates)
		}
	case f.TaskID != 0:
		var cond string
		cond, order = indexedEq(d, "j.task_id", a.add(f.TaskID), "j.id")
		where = append(where, cond)
	case f.DeviceID != 0:
		// A device's jobs are found through job_devices (see migration
		// 00014), in its (device_id, job_id) order.
		from = "job_devices jd JOIN jobs j ON j.id = jd.job_id"
		var cond string
		cond, order = indexedEq(d, "jd.device_id", a.add(f.DeviceID), "jd.job_id")
		where = append(where, cond, "jd.job_id > "+after)
	}
	if f.TaskID != 0 && f.DeviceID != 0 {
		where = append(where, "j.device_id = "+a.add(f.DeviceID))
	}
	if f.TaskID == 0 && len(f.States) > 0 {
		where = append(where, "j.state = "+stateValue(a, f.States[0]))
	}
	return "SELECT " + cols + " FROM " + from + " WHERE " + strings.Join(where, " AND ") +
		" ORDER BY " + order + " LIMIT " + a.add(limit)
}

// jobListRow reads the rows of jobCols.
func (s *sqlStore) jobListRow() jobRow {
	if s.dialect == sqliteDialect {
		return jobRow{jobListColumns.row()}
	}
	return newJobRow(0)
}

// jobCols are the job columns the lists read: jobListColumns on SQLite.
func (s *sqlStore) jobCols() string {
	if s.dialect == sqliteDialect {
		return jobListColumns.sql
	}
	return jobColumns
}

// stateValue returns a known job state as an SQL literal, anything else as
// a parameter. SQLite compares a state parameter with the partial indexes'
// state conditions, so it plans the statement again whenever the parameter
// is bound (about 100 µs); a literal keeps the prepared plan.
func stateValue(a *args, st ota.JobState) string {
	if slices.Contains(ota.JobStates, st) && !strings.ContainsAny(string(st), "'\\") {
		return "'" + string(st) + "'"
	}
	return a.add(st)
}

// stateList is a list of stateValue.
func stateList(a *args, states []ota.JobState) string {
	vs := make([]string, len(states))
	for i, st := range states {
		vs[i] = stateValue(a, st)
	}
	return strings.Join(vs, ", ")
}

// ReadsBesideWrites reports whether a read runs beside the store's write
// transaction rather than after it: on PostgreSQL reads take other pooled
// connections; SQLite reads the queued jobs on its one writer connection
// (QueuedJobs), so a read started during a commit waits for it.
func (s *sqlStore) ReadsBesideWrites() bool { return s.dialect == postgresDialect }

// queuedListColumns are jobListColumns and the job's sequence number, as
// QueuedJobs reads them on SQLite.
var queuedListColumns = packColumns(jobColumns+", j.seq",
	"j.device", "j.product", "j.module", "j.state", "j.code", "j.message", "j.from_version", "j.version")

// QueuedJobs returns the next jobs a task may start, in rollout order, and
// the place of the last of them.
func (s *sqlStore) QueuedJobs(ctx context.Context, q ota.QueuedQuery) ([]ota.Job, ota.RolloutPos, error) {
	var a args
	join := ""
	if q.OnlineOnly {
		join = " JOIN devices d ON d.id = j.device_id AND d.online = " + a.add(true)
		if s.dialect == sqliteDialect {
			// Whether each job's device is online, from the (product,
			// online, id) index alone rather than the devices table: the
			// jobs come in rollout order, so each is a lookup at a random
			// place, and after another connection's commit SQLite reads
			// those pages again. At 1,000,000 devices the index is 21 MB
			// against the table's 113 MB (QueuedJobs 11.6 -> 8.2 CPU-s for
			// a million starts, BENCHMARKS.md).
			join = " JOIN devices d INDEXED BY devices_product_online ON d.product = j.product AND d.online = " +
				a.add(true) + " AND d.id = j.device_id"
		}
	}
	after := ""
	if q.After != nil {
		// A row comparison, which both databases turn into the start of
		// the range they read of (task_id, phase, seq).
		after = " AND (j.phase, j.seq) > (" + a.add(q.After.Phase) + ", " + a.add(q.After.Seq) + ")"
	}
	cols, row := jobColumns+", j.seq", newJobRow(1)
	if s.dialect == sqliteDialect {
		// Read as the lists read jobs (jobListColumns): a batch's worth of
		// rows, with their times scanned as text rather than parsed by the
		// driver.
		cols, row = queuedListColumns.sql, jobRow{queuedListColumns.row()}
	}
	query := "SELECT " + cols + " FROM jobs j" + join + " WHERE j.task_id = " + a.add(q.TaskID) +
		" AND j.state = 'queued' AND j.phase <= " + a.add(q.MaxPhase) + after +
		" AND (j.next_attempt_at IS NULL OR j.next_attempt_at <= " + a.add(q.Now.UTC()) + ")" +
		" ORDER BY j.phase, j.seq LIMIT " + a.add(q.Limit)
	var db querier = s.db
	if s.dialect == sqliteDialect {
		// On the writer connection, whose page cache the engine's last
		// commit left warm (a reader's is emptied by every commit): the
		// queued jobs about to start are the pages that commit wrote
		// around. Started jobs cost 62-70 µs of CPU each this way, 72-81
		// when the read went to another connection (BENCHMARKS.md).
		t, err := s.begin(ctx)
		if err != nil {
			return nil, ota.RolloutPos{}, fmt.Errorf("queued jobs of task %d: %w", q.TaskID, err)
		}
		defer t.Rollback()
		db = t
	}
	var last ota.RolloutPos
	jobs, err := queryCap(ctx, db, query, a, q.Limit, func(rs interface{ Scan(...any) error }) (ota.Job, error) {
		j, err := row.scan(rs)
		if err != nil {
			return j, err
		}
		last = ota.RolloutPos{Phase: int(j.Phase), Seq: row.int64(jobColumnCount)}
		return j, row.err
	})
	if err != nil {
		return nil, ota.RolloutPos{}, fmt.Errorf("queued jobs of task %d: %w", q.TaskID, err)
	}
	return jobs, last, nil
}

// ExpiredJobs returns in-flight jobs whose deadline has passed.
func (s *sqlStore) ExpiredJobs(ctx context.Context, now time.Time, limit int) ([]ota.Job, error) {
	jobs, err := queryJobs(ctx, s.db, "SELECT "+jobColumns+" FROM jobs j WHERE j.deadline IS NOT NULL AND j.deadline <= $1"+
		" AND j.state IN "+activeStates+" ORDER BY j.deadline LIMIT $2", args{now.UTC(), limit})
	if err != nil {
		return nil, fmt.Errorf("expired jobs: %w", err)
	}
	return jobs, nil
}

// UnansweredJobs returns notified jobs of a task sent before sentBefore to
// devices that are online now.
func (s *sqlStore) UnansweredJobs(ctx context.Context, taskID int64, sentBefore time.Time, limit int) ([]ota.Job, error) {
	jobs, err := queryJobs(ctx, s.db, "SELECT "+jobColumns+" FROM jobs j JOIN devices d ON d.id = j.device_id AND d.online = $1"+
		" WHERE j.task_id = $2 AND j.state = 'notified' AND j.sent_at < $3 ORDER BY j.id LIMIT $4",
		args{true, taskID, sentBefore.UTC(), limit})
	if err != nil {
		return nil, fmt.Errorf("unanswered jobs of task %d: %w", taskID, err)
	}
	return jobs, nil
}

// JobsInStates returns up to limit jobs of a task in the given states with
// ids above afterID, in id order.
func (s *sqlStore) JobsInStates(ctx context.Context, taskID int64, states []ota.JobState, afterID int64, limit int) ([]ota.Job, error) {
	var a args
	q := "SELECT " + jobColumns + " FROM jobs j WHERE j.task_id = " + a.add(taskID) + " AND j.state IN (" +
		in(&a, states) + ") AND j.id > " + a.add(afterID) + " ORDER BY j.id LIMIT " + a.add(limit)
	jobs, err := queryJobs(ctx, s.db, q, a)
	if err != nil {
		return nil, fmt.Errorf("jobs of task %d: %w", taskID, err)
	}
	return jobs, nil
}

// TargetCandidates lists the devices of a product that match the query's
// tags and key list, with the version their module runs.
func (s *sqlStore) TargetCandidates(ctx context.Context, q ota.TargetQuery) ([]ota.Candidate, error) {
	if len(q.Devices) == 0 {
		return s.candidates(ctx, q, nil)
	}
	var out []ota.Candidate
	for _, keys := range chunks(q.Devices, 1) {
		c, err := s.candidates(ctx, q, keys)
		if err != nil {
			return nil, err
		}
		out = append(out, c...)
	}
	return out, nil
}

func (s *sqlStore) candidates(ctx context.Context, q ota.TargetQuery, keys []string) ([]ota.Candidate, error) {
	var a args
	query := "SELECT d.id, d.key, COALESCE(v.version, ''), d.online FROM devices d LEFT JOIN device_versions v" +
		" ON v.device_id = d.id AND v.module = " + a.add(q.Module) + " WHERE d.product = " + a.add(q.Product)
	if len(keys) > 0 {
		query += " AND d.key IN (" + in(&a, keys) + ")"
	}
	for _, name := range slices.Sorted(maps.Keys(q.Tags)) {
		query += " AND EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.name = " +
			a.add(name) + " AND t.value = " + a.add(q.Tags[name]) + ")"
	}
	rows, err := s.db.QueryContext(ctx, query+" ORDER BY d.id", a...)
	if err != nil {
		return nil, fmt.Errorf("target devices: %w", err)
	}
	defer rows.Close()
	// Read as the driver delivers the values (see rowValues): a task over
	// a million devices reads a million rows here.
	var out []ota.Candidate
	r := newRowValues(4)
	for rows.Next() {
		if err := r.scan(rows); err != nil {
			return nil, err
		}
		out = append(out, ota.Candidate{DeviceID: r.int64(0), Key: r.str(1), Version: r.str(2), Online: r.bool(3)})
		if r.err != nil {
			return nil, r.err
		}
	}
	return out, rows.Err()
}

// CancelQueued cancels a task's jobs that have not started (queued or
// awaiting their device's version) with one UPDATE per state and records an
// event per job with one INSERT ... SELECT, so cancelling a million queued
// jobs takes seconds; it can end the task in the same transaction. It
// returns the cancelled jobs per phase and the state they were in.
func (s *sqlStore) CancelQueued(ctx context.Context, r ota.CancelRequest) (ota.PhaseCounts, error) {
	t, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer t.Rollback()
	cancelled, err := waitingPerPhase(ctx, t, r.TaskID)
	if err != nil {
		return nil, err
	}
	for _, state := range []ota.JobState{ota.JobQueued, ota.JobAwaitingVersion} {
		if err := cancelWaitingJobs(ctx, t, r, state); err != nil {
			return nil, err
		}
	}
	deltas := ota.PhaseCounts{}
	for phase, byState := range cancelled {
		for state, n := range byState {
			deltas.Add(phase, state, -n)
			deltas.Add(phase, ota.JobCancelled, n)
		}
	}
	if err := addCounts(ctx, t, r.TaskID, deltas); err != nil {
		return nil, err
	}
	if r.Task != nil {
		if err := updateTasks(ctx, t, []ota.TaskUpdate{*r.Task}); err != nil {
			return nil, err
		}
	}
	if r.Event != nil {
		if err := t.addEvent(ctx, *r.Event); err != nil {
			return nil, err
		}
	}
	return cancelled, t.Commit()
}

func waitingPerPhase(ctx context.Context, t *tx, taskID int64) (ota.PhaseCounts, error) {
	rows, err := t.QueryContext(ctx, `SELECT phase, state, COUNT(*) FROM jobs WHERE task_id = $1
		AND state IN ('queued', 'awaiting_version') GROUP BY phase, state`, taskID)
	if err != nil {
		return nil, fmt.Errorf("count queued jobs: %w", err)
	}
	defer rows.Close()
	out := ota.PhaseCounts{}
	for rows.Next() {
		var phase int
		var state ota.JobState
		var n int64
		if err := rows.Scan(&phase, &state, &n); err != nil {
			return nil, err
		}
		out.Add(phase, state, n)
	}
	return out, rows.Err()
}

func cancelWaitingJobs(ctx context.Context, t *tx, r ota.CancelRequest, state ota.JobState) error {
	actor := r.Actor
	if actor == "" {
		actor = t.actor
	}
	data := encodeMap(map[string]string{"from": string(state), "state": string(ota.JobCancelled), "code": r.Code})
	_, err := t.ExecContext(ctx, "INSERT INTO events ("+eventColumns+`) SELECT $1, $2, $3, $4, product, device, NULL,
		task_id, id, $5, $6 FROM jobs WHERE task_id = $7 AND state = $8`,
		t.now, actor, ota.KindJob, string(ota.JobCancelled), r.Message, data, r.TaskID, state)
	if err != nil {
		return fmt.Errorf("record cancelled jobs: %w", err)
	}
	// The jobs leave active_jobs (see migration 00014) in one statement:
	// on PostgreSQL the update's returned rows feed the delete; SQLite has
	// no writing CTE, so its delete reads the jobs about to be cancelled
	// first, through the same index, probing active_jobs by its key.
	update := `UPDATE jobs SET state = $1, active = FALSE, code = $2, message = $3, updated_at = $4,
		deadline = NULL, next_attempt_at = NULL, rev = rev + 1 WHERE task_id = $5 AND state = $6`
	if t.dialect == postgresDialect {
		_, err = t.ExecContext(ctx, "WITH c AS ("+update+` RETURNING device_id, module, id)
			DELETE FROM active_jobs a USING c WHERE a.device_id = c.device_id AND a.module = c.module AND a.job_id = c.id`,
			ota.JobCancelled, r.Code, r.Message, t.now, r.TaskID, state)
	} else {
		_, err = t.ExecContext(ctx, `DELETE FROM active_jobs WHERE (device_id, module, job_id) IN
			(SELECT device_id, module, id FROM jobs WHERE task_id = $1 AND state = $2)`, r.TaskID, state)
		if err == nil {
			_, err = t.ExecContext(ctx, update, ota.JobCancelled, r.Code, r.Message, t.now, r.TaskID, state)
		}
	}
	if err != nil {
		return fmt.Errorf("cancel queued jobs: %w", err)
	}
	return nil
}

// followActivity keeps active_jobs (see migration 00014) equal to
// jobs.active after job changes were written (written: their ids): the
// jobs a change ended leave it, then the jobs a change brought back (a
// retry) enter it, a statement (a chunk on SQLite) for each, in the
// transaction of the changes. Its key refuses a job brought back on a
// device's module that has another active job, as the unique index on
// jobs did. (A row trigger did this before: on PostgreSQL it cost a bulk
// cancel ~10 µs of CPU a job.)
func followActivity(ctx context.Context, t *tx, changes []ota.JobUpdate, written map[int64]bool) error {
	var ended, back []ota.Job
	for _, c := range changes {
		if !activityChanges(c) || !written[c.New.ID] {
			continue
		}
		if c.New.State.Terminal() {
			ended = append(ended, c.New)
		} else {
			back = append(back, c.New)
		}
	}
	if err := setActive(ctx, t, ended, false); err != nil {
		return fmt.Errorf("end jobs: %w", err)
	}
	err := setActive(ctx, t, back, true)
	if isUniqueViolation(err) {
		return conflict("a job brought back has a device whose module has another active job")
	}
	if err != nil {
		return fmt.Errorf("bring jobs back: %w", err)
	}
	return nil
}

// setActive adds jobs to active_jobs (active) or removes them.
func setActive(ctx context.Context, t *tx, jobs []ota.Job, active bool) error {
	if len(jobs) == 0 {
		return nil
	}
	if t.dialect == postgresDialect {
		devices, modules, ids := make([]int64, len(jobs)), make([]string, len(jobs)), make([]int64, len(jobs))
		for i, j := range jobs {
			devices[i], modules[i], ids[i] = j.DeviceID, j.Module, j.ID
		}
		v := "unnest($1::bigint[], $2::text[], $3::bigint[]) AS v (device_id, module, job_id)"
		q := "DELETE FROM active_jobs a USING " + v + " WHERE a.device_id = v.device_id AND a.module = v.module AND a.job_id = v.job_id"
		if active {
			q = "INSERT INTO active_jobs (device_id, module, job_id) SELECT * FROM " + v
		}
		_, err := t.ExecContext(ctx, q, devices, modules, ids)
		return err
	}
	for _, chunk := range chunks(jobs, 3) {
		a := make(args, 0, 3*len(chunk))
		for _, j := range chunk {
			a = append(a, j.DeviceID, j.Module, j.ID)
		}
		// The IN (SELECT ...) form, not IN (VALUES ...): SQLite then
		// probes active_jobs by its key instead of reading all of it.
		q := "DELETE FROM active_jobs WHERE (device_id, module, job_id) IN (SELECT * FROM (VALUES " + values(len(chunk), 3) + "))"
		if active {
			q = "INSERT" + t.orRollback() + " INTO active_jobs (device_id, module, job_id) VALUES " + values(len(chunk), 3)
		}
		if _, err := t.ExecContext(ctx, q, a...); err != nil {
			return err
		}
	}
	return nil
}

// Apply writes a batch of the engine's changes in one transaction. A job
// whose revision moved since it was read is left alone and reported.
func (s *sqlStore) Apply(ctx context.Context, c ota.ChangeSet) ([]int64, error) {
	t, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer t.Rollback()
	conflicts, deltas, err := updateJobs(ctx, t, c.Jobs)
	if err != nil {
		return nil, err
	}
	steps := []func() error{
		func() error { return applyDeltas(ctx, t, deltas) },
		func() error { return addMinutes(ctx, t, c.Jobs, conflicts) },
		func() error { return addJobs(ctx, t, c.NewJobs) },
		func() error { return setPresence(ctx, t, c.Presence, c.Seen) },
		func() error { return setVersions(ctx, t, c.Versions) },
		func() error { return updateTasks(ctx, t, c.Tasks) },
		func() error { return deleteDevices(ctx, t, c.DeleteDevices) },
		func() error { return t.addEvents(ctx, withoutConflicts(c.Events, conflicts)) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return conflicts, t.Commit()
}

// jobUpdateColumns are the columns a job change writes, with their SQL types.
var jobUpdateColumns = []struct{ name, sqlType string }{
	{"id", "BIGINT"}, {"rev", "BIGINT"}, {"state", "TEXT"}, {"percent", "INTEGER"}, {"attempt", "INTEGER"},
	{"code", "TEXT"}, {"message", "TEXT"}, {"phase", "INTEGER"}, {"from_version", "TEXT"}, {"started_at", "TIMESTAMPTZ"},
	{"deadline", "TIMESTAMPTZ"}, {"next_attempt_at", "TIMESTAMPTZ"}, {"sent_at", "TIMESTAMPTZ"}, {"updated_at", "TIMESTAMPTZ"},
}

// jobUpdateColumnsActive are jobUpdateColumns and active, for the changes
// that end a job or bring one back.
var jobUpdateColumnsActive = append(slices.Clip(jobUpdateColumns), struct{ name, sqlType string }{"active", "BOOLEAN"})

// updateJobs writes job changes with a revision check, a chunk of changes
// per statement (UPDATE ... FROM VALUES ... RETURNING), and returns the
// conflicting ids and the count deltas of the changes written.
func updateJobs(ctx context.Context, t *tx, changes []ota.JobUpdate) ([]int64, map[int64]ota.PhaseCounts, error) {
	written := make(map[int64]bool, len(changes))
	note := func(ids []int64, err error) error {
		for _, id := range ids {
			written[id] = true
		}
		return err
	}
	if t.dialect == postgresDialect {
		// PostgreSQL writes every change of the batch in one statement of
		// arrays; the narrower statements below are for SQLite's indexes.
		if len(changes) > 0 {
			if err := note(updateJobsUnnest(ctx, t, changes, slices.ContainsFunc(changes, activityChanges))); err != nil {
				return nil, nil, err
			}
		}
	} else {
		// The changes are sorted by the columns they write, as indexes
		// into changes: a change holds two jobs, and copying a thousand
		// of them cost 2 µs a job start.
		var byKind [3][]int
		for i := range changes {
			c, k := &changes[i], writeFull
			switch {
			case percentOnly(c):
				k = writePercent
			case inFlight(c):
				k = writeFlight
			}
			byKind[k] = append(byKind[k], i)
		}
		for k, idx := range byKind {
			kind := jobWrite(k)
			for _, chunk := range chunks(idx, len(kind.columns(true))) {
				if err := note(updateJobChunk(ctx, t, changes, chunk, kind)); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	if err := followActivity(ctx, t, changes, written); err != nil {
		return nil, nil, err
	}
	var conflicts []int64
	deltas := map[int64]ota.PhaseCounts{}
	for _, c := range changes {
		o, n := c.Old, c.New
		if !written[n.ID] {
			conflicts = append(conflicts, n.ID)
			continue
		}
		if o.State != n.State || o.Phase != n.Phase {
			d := deltas[n.TaskID]
			if d == nil {
				d = ota.PhaseCounts{}
				deltas[n.TaskID] = d
			}
			d.Add(int(o.Phase), o.State, -1)
			d.Add(int(n.Phase), n.State, 1)
		}
	}
	return conflicts, deltas, nil
}

// jobUpdateColumnsPercent are the columns a download's rising percent
// writes (see percentOnly).
var jobUpdateColumnsPercent = []struct{ name, sqlType string }{
	{"id", "BIGINT"}, {"rev", "BIGINT"}, {"percent", "INTEGER"}, {"updated_at", "TIMESTAMPTZ"},
}

// percentOnly reports whether a change moves only the job's percent (and
// its update time): a downloading device's progress report. Such changes
// are written by a statement that sets those two columns alone, so SQLite
// leaves the job's state, deadline, retry and failure indexes untouched
// (it rewrites every index whose columns an UPDATE sets, changed or not).
func percentOnly(c *ota.JobUpdate) bool {
	o, n := &c.Old, &c.New
	return o.Percent != n.Percent && o.State == n.State && o.Attempt == n.Attempt && o.Code == n.Code &&
		o.Message == n.Message && o.Phase == n.Phase && o.FromVersion == n.FromVersion &&
		sameTime(o.StartedAt, n.StartedAt) && sameTime(o.Deadline, n.Deadline) &&
		sameTime(o.NextAttemptAt, n.NextAttemptAt) && sameTime(o.SentAt, n.SentAt)
}

// jobUpdateColumnsFlight are the columns a job's move through its
// flight writes (see inFlight).
var jobUpdateColumnsFlight = []struct{ name, sqlType string }{
	{"id", "BIGINT"}, {"rev", "BIGINT"}, {"state", "TEXT"}, {"percent", "INTEGER"}, {"code", "TEXT"},
	{"message", "TEXT"}, {"sent_at", "TIMESTAMPTZ"}, {"updated_at", "TIMESTAMPTZ"},
}

// inFlight reports whether a change leaves the job's attempt, phase, start,
// deadline, retry time and activity as they were: a device's reports
// between the start and the end of an attempt (downloading, downloaded,
// installing, rebooting). Such changes are written by a statement that sets
// only what they may change, so SQLite leaves the deadline, retry and
// queue indexes untouched and binds 8 values a job instead of 14.
func inFlight(c *ota.JobUpdate) bool {
	o, n := &c.Old, &c.New
	return o.State.Terminal() == n.State.Terminal() && o.Attempt == n.Attempt && o.Phase == n.Phase &&
		o.FromVersion == n.FromVersion && sameTime(o.StartedAt, n.StartedAt) && sameTime(o.Deadline, n.Deadline) &&
		sameTime(o.NextAttemptAt, n.NextAttemptAt)
}

func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}

// jobWrite is which columns a chunk of job changes writes.
type jobWrite int

const (
	writeFull    jobWrite = iota // every column a change may write
	writeFlight                  // the columns of a move in flight (inFlight)
	writePercent                 // the percent alone (percentOnly)
)

// columns are the columns kind writes; active only with a full write that
// ends a job or brings one back (withActive).
func (kind jobWrite) columns(withActive bool) []struct{ name, sqlType string } {
	switch {
	case kind == writePercent:
		return jobUpdateColumnsPercent
	case kind == writeFlight:
		return jobUpdateColumnsFlight
	case withActive:
		return jobUpdateColumnsActive
	}
	return jobUpdateColumns
}

// activityChanges reports whether a change ends a job or brings one back.
func activityChanges(c ota.JobUpdate) bool { return c.Old.State.Terminal() != c.New.State.Terminal() }

// updateJobChunk writes the changes at the indexes of chunk, the columns
// kind says, in one SQLite statement.
func updateJobChunk(ctx context.Context, t *tx, changes []ota.JobUpdate, chunk []int, kind jobWrite) ([]int64, error) {
	// active (see migration 00010) is written only by the chunks that end
	// a job or bring one back: left out of SET, the one-active-job index
	// is not touched at all.
	withActive := kind == writeFull && slices.ContainsFunc(chunk, func(i int) bool { return activityChanges(changes[i]) })
	cols := kind.columns(withActive)
	a := make(args, 0, len(chunk)*len(cols))
	for _, i := range chunk {
		c := &changes[i]
		n := &c.New
		switch kind {
		case writePercent:
			a = append(a, n.ID, c.Old.Rev, n.Percent, n.UpdatedAt.UTC())
			continue
		case writeFlight:
			a = append(a, n.ID, c.Old.Rev, n.State, n.Percent, n.Code, n.Message, nullTime(n.SentAt), n.UpdatedAt.UTC())
			continue
		}
		a = append(a, n.ID, c.Old.Rev, n.State, n.Percent, n.Attempt, n.Code, n.Message, n.Phase, n.FromVersion,
			nullTime(n.StartedAt), nullTime(n.Deadline), nullTime(n.NextAttemptAt), nullTime(n.SentAt), n.UpdatedAt.UTC())
		if withActive {
			a = append(a, !n.State.Terminal())
		}
	}
	list := values(len(chunk), len(cols))
	names := make([]string, len(cols))
	sets := make([]string, 0, len(cols))
	for i, c := range cols {
		names[i] = c.name
		if c.name != "id" && c.name != "rev" {
			sets = append(sets, c.name+" = v."+c.name)
		}
	}
	q := "WITH v (" + strings.Join(names, ", ") + ") AS (VALUES " + list + ") UPDATE" + t.orRollback() + " jobs SET " +
		strings.Join(sets, ", ") + ", rev = jobs.rev + 1 FROM v WHERE jobs.id = v.id AND jobs.rev = v.rev RETURNING jobs.id"
	res, err := t.QueryContext(ctx, q, a...)
	if err != nil {
		return nil, fmt.Errorf("update jobs: %w", err)
	}
	defer res.Close()
	var ids []int64
	for res.Next() {
		var id int64
		if err := res.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, res.Err()
}

func applyDeltas(ctx context.Context, t *tx, deltas map[int64]ota.PhaseCounts) error {
	for taskID, d := range deltas {
		if err := addCounts(ctx, t, taskID, d); err != nil {
			return err
		}
	}
	return nil
}

// withoutConflicts drops the events of job changes that were not written.
func withoutConflicts(events []ota.Event, conflicts []int64) []ota.Event {
	if len(conflicts) == 0 {
		return events
	}
	out := make([]ota.Event, 0, len(events))
	for _, e := range events {
		if e.JobID == 0 || !slices.Contains(conflicts, e.JobID) {
			out = append(out, e)
		}
	}
	return out
}

// setPresence records connects and disconnects (online and last_seen) and
// other messages (last_seen only), a chunk of devices per statement. When
// a batch holds several connects or disconnects for one device, the latest
// (by At, then by order) wins, and last_seen never moves back. A
// disconnect older than the device's last message (stored, or in the
// batch) changes nothing: the device has been back since. Behind an
// external broker the will of a connection that ended and the first
// message of the next one can reach two replicas at once and be stored in
// either order.
//
// Devices whose batch holds no connect or disconnect (a message's time
// alone: most of a fleet's traffic) get a statement that sets last_seen
// alone, so that SQLite leaves the (product, online, id) index untouched:
// it rewrites every index whose columns an UPDATE sets, changed or not.
func setPresence(ctx context.Context, t *tx, ps []ota.Presence, seen []ota.LastSeen) error {
	last := latestPresence(ps, seen)
	ids := slices.Sorted(maps.Keys(last))
	var seenOnly []int64
	if len(ps) < len(ids) {
		changed := ids[:0:0]
		for _, id := range ids {
			if last[id].online == nil {
				seenOnly = append(seenOnly, id)
			} else {
				changed = append(changed, id)
			}
		}
		ids = changed
	}
	if err := setLastSeen(ctx, t, seenOnly, last); err != nil {
		return err
	}
	for _, chunk := range chunks(ids, 4) {
		var a args
		rows := make([]string, len(chunk))
		for i, id := range chunk {
			r := last[id]
			var online any
			if r.online != nil {
				online = *r.online
			}
			rows[i] = "(" + t.typed(a.add(id), "BIGINT") + ", " + t.typed(a.add(online), "BOOLEAN") + ", " +
				t.typed(a.add(r.at.UTC()), "TIMESTAMPTZ") + ", " + t.typed(a.add(r.state.UTC()), "TIMESTAMPTZ") + ")"
		}
		q := "WITH v (id, online, at, state_at) AS (VALUES " + strings.Join(rows, ", ") +
			") UPDATE devices SET online = CASE WHEN v.online = FALSE AND devices.last_seen > v.state_at THEN devices.online" +
			" ELSE COALESCE(v.online, devices.online) END," +
			" last_seen = CASE WHEN devices.last_seen IS NULL OR devices.last_seen < v.at THEN v.at ELSE devices.last_seen END" +
			" FROM v WHERE devices.id = v.id"
		if _, err := t.ExecContext(ctx, q, a...); err != nil {
			return fmt.Errorf("record device presence: %w", err)
		}
	}
	return nil
}

// setLastSeen moves the last_seen of devices forward to their row's at.
func setLastSeen(ctx context.Context, t *tx, ids []int64, last map[int64]presenceRow) error {
	for _, chunk := range chunks(ids, 2) {
		a := make(args, 0, 2*len(chunk))
		rows := make([]string, len(chunk))
		for i, id := range chunk {
			rows[i] = "(" + t.typed(a.add(id), "BIGINT") + ", " + t.typed(a.add(last[id].at.UTC()), "TIMESTAMPTZ") + ")"
		}
		q := "WITH v (id, at) AS (VALUES " + strings.Join(rows, ", ") +
			") UPDATE devices SET last_seen = v.at FROM v" +
			" WHERE devices.id = v.id AND (devices.last_seen IS NULL OR devices.last_seen < v.at)"
		if _, err := t.ExecContext(ctx, q, a...); err != nil {
			return fmt.Errorf("record device last seen: %w", err)
		}
	}
	return nil
}

// presenceRow is what a batch says of one device's presence.
type presenceRow struct {
	online *bool
	at     time.Time // the latest of the batch: last_seen's candidate
	state  time.Time // when online was set
	heard  time.Time // the latest message or connect of the batch
}

// latestPresence folds a batch's presence changes and messages into one
// row a device.
func latestPresence(ps []ota.Presence, seen []ota.LastSeen) map[int64]presenceRow {
	last := make(map[int64]presenceRow, len(ps)+len(seen))
	for _, s := range seen {
		if r := last[s.DeviceID]; s.At.After(r.at) {
			r.at, r.heard = s.At, s.At
			last[s.DeviceID] = r
		}
	}
	for _, p := range ps {
		r := last[p.DeviceID]
		if (r.online != nil && p.At.Before(r.state)) || (!p.Online && p.At.Before(r.heard)) {
			continue
		}
		online := p.Online
		r.online, r.state, r.at = &online, p.At, maxTime(r.at, p.At)
		if online {
			r.heard = maxTime(r.heard, p.At)
		}
		last[p.DeviceID] = r
	}
	return last
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// deleteDevices deletes devices (their tags and versions go with them).
func deleteDevices(ctx context.Context, t *tx, ids []int64) error {
	for _, id := range ids {
		if err := rememberDevices(ctx, t, "id = $1", id); err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, "DELETE FROM devices WHERE id = $1", id)
		if err != nil {
			return fmt.Errorf("delete device: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("delete device: %w", err)
		} else if n == 0 {
			return notFound("device %d no longer exists", id)
		}
	}
	return nil
}

// setVersions records the versions devices report, one multi-row upsert
// per chunk.
func setVersions(ctx context.Context, t *tx, vs []ota.VersionReport) error {
	type key struct {
		device int64
		module string
	}
	last := make(map[key]ota.VersionReport, len(vs))
	for _, v := range vs {
		last[key{v.DeviceID, v.Module}] = v
	}
	rows := slices.Collect(maps.Values(last))
	const cols = 4
	for _, chunk := range chunks(rows, cols) {
		a := make(args, 0, len(chunk)*cols)
		for _, v := range chunk {
			a = append(a, v.DeviceID, v.Module, v.Version, v.At.UTC())
		}
		q := "INSERT INTO device_versions (device_id, module, version, reported_at) VALUES " + values(len(chunk), cols) +
			" ON CONFLICT (device_id, module) DO UPDATE SET version = excluded.version, reported_at = excluded.reported_at"
		if _, err := t.ExecContext(ctx, q, a...); err != nil {
			return fmt.Errorf("record versions: %w", err)
		}
	}
	return nil
}

// addMinutes adds the batch's starts, successes and failures to the tasks'
// timeline: per minute, and per second over each task's first minutes. What
// counts as which is the domain's rule (ota.Timeline); conflicts were not
// written, so they count for nothing.
func addMinutes(ctx context.Context, t *tx, changes []ota.JobUpdate, conflicts []int64) error {
	written := changes
	if len(conflicts) > 0 {
		written = slices.DeleteFunc(slices.Clone(changes), func(c ota.JobUpdate) bool {
			return slices.Contains(conflicts, c.New.ID)
		})
	}
	for _, p := range ota.Timeline(written, time.Minute) {
		_, err := t.ExecContext(ctx, `INSERT INTO task_minutes (task_id, minute, started, succeeded, failed)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (task_id, minute) DO UPDATE SET
			started = task_minutes.started + excluded.started, succeeded = task_minutes.succeeded + excluded.succeeded,
			failed = task_minutes.failed + excluded.failed`, p.TaskID, p.Minute, p.Started, p.Succeeded, p.Failed)
		if err != nil {
			return fmt.Errorf("record task timeline: %w", err)
		}
	}
	for _, p := range ota.Timeline(written, time.Second) {
		// Only within ota.TimelineSecondsSpan of the task's start: a task
		// of days adds at most 600 rows here.
		_, err := t.ExecContext(ctx, `INSERT INTO task_seconds (task_id, second, started, succeeded, failed)
			SELECT id, `+t.typed("$2", "TIMESTAMPTZ")+`, $3, $4, $5 FROM tasks WHERE id = $1 AND started_at >= $6
			ON CONFLICT (task_id, second) DO UPDATE SET
			started = task_seconds.started + excluded.started, succeeded = task_seconds.succeeded + excluded.succeeded,
			failed = task_seconds.failed + excluded.failed`, p.TaskID, p.Minute, p.Started, p.Succeeded, p.Failed, p.Minute.Add(-ota.TimelineSecondsSpan))
		if err != nil {
			return fmt.Errorf("record task timeline: %w", err)
		}
	}
	return nil
}

// TaskTimeline returns a task's activity per minute since a time, oldest
// first (at most 30 days of minutes).
func (s *sqlStore) TaskTimeline(ctx context.Context, taskID int64, since time.Time) ([]ota.TimelinePoint, error) {
	return s.timeline(ctx, taskID, `SELECT minute, started, succeeded, failed FROM task_minutes
		WHERE task_id = $1 AND minute >= $2 ORDER BY minute LIMIT 43200`, args{taskID, since.UTC()})
}

// TaskSeconds returns a task's activity per second over its first ten
// minutes, oldest first (Minute holds the second).
func (s *sqlStore) TaskSeconds(ctx context.Context, taskID int64) ([]ota.TimelinePoint, error) {
	return s.timeline(ctx, taskID, `SELECT second, started, succeeded, failed FROM task_seconds
		WHERE task_id = $1 ORDER BY second LIMIT 1000`, args{taskID})
}

// timeline reads timeline points: a time and the three counts.
func (s *sqlStore) timeline(ctx context.Context, taskID int64, query string, a args) ([]ota.TimelinePoint, error) {
	points, err := queryAll(ctx, s.db, query, a, func(row interface{ Scan(...any) error }) (ota.TimelinePoint, error) {
		var p ota.TimelinePoint
		err := row.Scan(&p.Minute, &p.Started, &p.Succeeded, &p.Failed)
		p.Minute = p.Minute.UTC()
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("task %d timeline: %w", taskID, err)
	}
	return points, nil
}

// FailureCount is how many jobs of a task ended with one failure code.
type FailureCount struct {
	Code  string `json:"code"`
	State string `json:"state"`
	Count int64  `json:"count"`
}

// TaskFailures groups a task's failed, timed-out, rejected and cancelled
// jobs by code, most frequent first.
func (s *sqlStore) TaskFailures(ctx context.Context, taskID int64) ([]FailureCount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT code, state, COUNT(*) FROM jobs WHERE task_id = $1
		AND state IN ('failed', 'timed_out', 'rejected', 'cancelled') GROUP BY code, state ORDER BY COUNT(*) DESC, code`, taskID)
	if err != nil {
		return nil, fmt.Errorf("task %d failures: %w", taskID, err)
	}
	defer rows.Close()
	var out []FailureCount
	for rows.Next() {
		var f FailureCount
		if err := rows.Scan(&f.Code, &f.State, &f.Count); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// DeviceTags returns the tags of the given devices (devices without tags
// are absent).
func (s *sqlStore) DeviceTags(ctx context.Context, deviceIDs []int64) (map[int64]map[string]string, error) {
	devs := make([]ota.Device, len(deviceIDs))
	byID := make(map[int64]*ota.Device, len(deviceIDs))
	for i, id := range deviceIDs {
		devs[i] = ota.Device{ID: id, Tags: map[string]string{}}
		byID[id] = &devs[i]
	}
	for _, chunk := range chunks(deviceIDs, 1) {
		if err := loadPairs(ctx, s.db, "device_tags", "device_id, name, value", s.dialect == sqliteDialect, chunk,
			func(d *ota.Device, k, v string) { d.Tags[k] = v }, byID); err != nil {
			return nil, fmt.Errorf("load device tags: %w", err)
		}
	}
	out := make(map[int64]map[string]string, len(devs))
	for _, d := range devs {
		if len(d.Tags) > 0 {
			out[d.ID] = d.Tags
		}
	}
	return out, nil
}

// addJobs inserts jobs that join running dynamic tasks, with their counts
// and the tasks' totals.
func addJobs(ctx context.Context, t *tx, jobs []ota.Job) error {
	byTask := map[int64][]ota.Job{}
	for _, j := range jobs {
		byTask[j.TaskID] = append(byTask[j.TaskID], j)
	}
	for taskID, js := range byTask {
		var seq int64
		if err := t.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM jobs WHERE task_id = $1", taskID).Scan(&seq); err != nil {
			return fmt.Errorf("next job position: %w", err)
		}
		counts := ota.PhaseCounts{}
		for _, j := range js {
			seq++
			var id int64
			err := t.QueryRowContext(ctx, `INSERT INTO jobs (task_id, device_id, device, product, module, state, phase, seq,
				from_version, version, created_at, updated_at, attempt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
				RETURNING id`,
				taskID, j.DeviceID, j.Device, j.Product, j.Module, newJobState(j), j.Phase, seq, j.FromVersion, j.Version, t.now, t.now, 1).Scan(&id)
			if err != nil {
				return fmt.Errorf("add job for device %s: %w", j.Device, err)
			}
			// The job's entries by device (see migration 00014).
			_, err = t.ExecContext(ctx, "INSERT INTO job_devices (device_id, job_id, module) VALUES ($1, $2, $3)", j.DeviceID, id, j.Module)
			if err == nil {
				_, err = t.ExecContext(ctx, "INSERT INTO active_jobs (device_id, module, job_id) VALUES ($1, $2, $3)", j.DeviceID, j.Module, id)
			}
			if err != nil {
				return fmt.Errorf("add job for device %s: %w", j.Device, err)
			}
			counts.Add(int(j.Phase), newJobState(j), 1)
		}
		if _, err := t.ExecContext(ctx, "UPDATE tasks SET total = total + $1 WHERE id = $2", len(js), taskID); err != nil {
			return fmt.Errorf("count task jobs: %w", err)
		}
		if err := addCounts(ctx, t, taskID, counts); err != nil {
			return err
		}
	}
	return nil
}

// MarkAllOffline records every device as offline. A single server calls it
// at start: after a crash, the devices it had connected are gone, and they
// come back online as they reconnect.
func (s *sqlStore) MarkAllOffline(ctx context.Context) (int64, error) {
	t, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer t.Rollback()
	res, err := t.ExecContext(ctx, "UPDATE devices SET online = $1 WHERE online = $2", false, true)
	if err != nil {
		return 0, fmt.Errorf("mark devices offline: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, t.Commit()
}

// NextRetry returns the earliest retry time after now among a task's queued
// jobs that wait for a backoff.
func (s *sqlStore) NextRetry(ctx context.Context, taskID int64, now time.Time) (time.Time, bool, error) {
	// ORDER BY ... LIMIT 1 rather than MIN(): SQLite gives an aggregate no
	// declared type, so its time would come back as text.
	var next time.Time
	err := s.db.QueryRowContext(ctx, `SELECT next_attempt_at FROM jobs WHERE task_id = $1 AND state = 'queued'
		AND next_attempt_at > $2 ORDER BY next_attempt_at LIMIT 1`, taskID, now.UTC()).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next retry of task %d: %w", taskID, err)
	}
	return next.UTC(), true, nil
}

// newJobState is the state a new job is stored in: queued unless it awaits
// its device's first version report.
func newJobState(j ota.Job) ota.JobState {
	if j.State == ota.JobAwaitingVersion {
		return j.State
	}
	return ota.JobQueued
}
