package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/otter-ota/otter/internal/ota"
)

// TaskFilter narrows a task list. Zero fields do not filter.
type TaskFilter struct {
	Product    string
	FirmwareID int64
	States     []ota.TaskState
}

// taskColumns are the task columns scanTask reads, in order.
const taskColumns = `id, name, product, module, firmware_id, version, verification, mode, state, policy, target,
	phase, total, reason, engine, created_by, created_at, started_at, ended_at`

// scanTask reads one row of taskColumns; counts are loaded separately.
func scanTask(row interface{ Scan(...any) error }) (ota.Task, []byte, error) {
	var t ota.Task
	var policy, target, engine string
	var started, ended sql.NullTime
	err := row.Scan(&t.ID, &t.Name, &t.Product, &t.Module, &t.FirmwareID, &t.Version, &t.Verification, &t.Mode,
		&t.State, &policy, &target, &t.Phase, &t.Total, &t.Reason, &engine, &t.CreatedBy, &t.CreatedAt, &started, &ended)
	if err != nil {
		return t, nil, err
	}
	if err := json.Unmarshal([]byte(policy), &t.Policy); err != nil {
		return t, nil, fmt.Errorf("decode task %d policy: %w", t.ID, err)
	}
	if err := json.Unmarshal([]byte(target), &t.Target); err != nil {
		return t, nil, fmt.Errorf("decode task %d target: %w", t.ID, err)
	}
	t.CreatedAt = t.CreatedAt.UTC()
	t.StartedAt, t.EndedAt = timePtr(started), timePtr(ended)
	return t, []byte(engine), nil
}

func taskNotFound(id int64) error { return notFound("task %d does not exist", id) }

// CreateTask stores a task and its jobs (all queued, in rollout order) in
// one transaction, with the task's counts. A device that already has an
// active job on the module makes it fail with ECONFLICT: the database's
// one-active-job index is the final judge. Once committed, it fills each
// job as stored (its id, task, state, attempt, times and revision), so that
// the engine can cache the new jobs instead of reading them back.
//
// On SQLite the transaction runs without foreign key checks (see
// beginUnchecked): the jobs refer to the task it inserts, and the task's
// firmware is checked here instead.
func (s *sqlStore) CreateTask(ctx context.Context, task *ota.Task, jobs []ota.Job) error {
	t, err := s.beginUnchecked(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	task.CreatedAt = t.now
	var found int
	err = t.QueryRowContext(ctx, "SELECT COUNT(*) FROM firmware WHERE id = $1", task.FirmwareID).Scan(&found)
	if err != nil {
		return fmt.Errorf("find the task's firmware: %w", err)
	}
	if found == 0 {
		return notFound("firmware %d does not exist", task.FirmwareID)
	}
	id, err := insertTask(ctx, t, task)
	if err != nil {
		return err
	}
	if err := insertJobs(ctx, t, task, id, jobs); err != nil {
		return err
	}
	e := ota.Event{Kind: ota.KindTask, Action: "created", Product: task.Product, TaskID: id, FirmwareID: task.FirmwareID,
		Message: fmt.Sprintf("%s task of %s %s on %s", task.Mode, task.Module, task.Version, ota.Plural(len(jobs), "device", "devices")),
		Data:    map[string]string{"jobs": strconv.Itoa(len(jobs)), "mode": string(task.Mode)}}
	if err := t.addEvent(ctx, e); err != nil {
		return err
	}
	if err := t.Commit(); err != nil {
		return err
	}
	task.ID = id
	for i := range jobs {
		j := &jobs[i]
		j.TaskID, j.State, j.Percent, j.Attempt, j.Code, j.Message = id, newJobState(*j), 0, 1, "", ""
		j.CreatedAt, j.UpdatedAt, j.Rev = t.now, t.now, 0
		j.StartedAt, j.Deadline, j.NextAttemptAt, j.SentAt = nil, nil, nil, nil
	}
	return nil
}

func insertTask(ctx context.Context, t *tx, task *ota.Task) (int64, error) {
	policy, err := json.Marshal(task.Policy)
	if err != nil {
		return 0, err
	}
	target, err := json.Marshal(task.Target)
	if err != nil {
		return 0, err
	}
	var id int64
	err = t.QueryRowContext(ctx, `INSERT INTO tasks (name, product, module, firmware_id, version, verification, mode,
		state, policy, target, phase, total, reason, created_by, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id`,
		task.Name, task.Product, task.Module, task.FirmwareID, task.Version, task.Verification, task.Mode,
		task.State, string(policy), string(target), task.Phase, task.Total, task.Reason, t.actor, t.now, t.now,
	).Scan(&id)
	if isForeignKeyViolation(err) {
		return 0, notFound("firmware %d does not exist", task.FirmwareID)
	}
	if err != nil {
		return 0, fmt.Errorf("insert task: %w", err)
	}
	task.CreatedBy = t.actor
	return id, nil
}

// insertJobs writes a new task's jobs with multi-row INSERTs and counts
// them per phase.
func insertJobs(ctx context.Context, t *tx, task *ota.Task, taskID int64, jobs []ota.Job) error {
	for _, j := range jobs {
		if j.Product != task.Product || j.Module != task.Module || j.Version != task.Version {
			return fmt.Errorf("insert jobs: a job of %s %s %s in a task of %s %s %s",
				j.Product, j.Module, j.Version, task.Product, task.Module, task.Version)
		}
	}
	if t.dialect == postgresDialect {
		if len(jobs) == 0 {
			return nil
		}
		if err := copyJobs(ctx, t, taskID, task.Module, jobs); err != nil {
			return err
		}
		return addCounts(ctx, t, taskID, newJobCounts(jobs))
	}
	// What every job of the task shares is bound once a statement, in a
	// row of its own that the statement joins to each job's row: the same
	// placeholder twice would be a named parameter to SQLite, which looks
	// names up by a linear search (see binder).
	shared := args{taskID, task.Product, task.Module, task.Version, t.now}
	seq := 0
	byDevice := make([][2]int64, 0, len(jobs)) // device and job ids
	for _, chunk := range chunks(jobs, newJobParams) {
		a := append(make(args, 0, len(shared)+len(chunk)*newJobParams), shared...)
		for _, j := range chunk {
			seq++
			a = append(a, j.DeviceID, j.Device, newJobState(j), j.Phase, seq, j.FromVersion)
		}
		q := `INSERT` + t.orRollback() + ` INTO jobs (task_id, device_id, device, product, module, state, phase, seq, from_version,
			version, created_at, updated_at, attempt)
			SELECT s.task_id, v.column1, v.column2, s.product, s.module, v.column3, v.column4, v.column5, v.column6,
			s.version, s.now, s.now, 1
			FROM (SELECT $1 AS task_id, $2 AS product, $3 AS module, $4 AS version, $5 AS now) s,
			(VALUES ` + valuesAfter(len(chunk), newJobParams, len(shared)) + `) v`
		res, err := t.ExecContext(ctx, q, a...)
		if err != nil {
			return fmt.Errorf("insert jobs: %w", err)
		}
		// jobs.id is AUTOINCREMENT: each row of the statement got the
		// id after the last one ever used, in order, so the chunk's ids
		// end at the last one inserted.
		last, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("insert jobs: %w", err)
		}
		first := last - int64(len(chunk)) + 1
		for i, j := range chunk {
			chunk[i].ID = first + int64(i)
			byDevice = append(byDevice, [2]int64{j.DeviceID, first + int64(i)})
		}
	}
	if err := indexJobsSQLite(ctx, t, task.Module, byDevice); err != nil {
		return err
	}
	return addCounts(ctx, t, taskID, newJobCounts(jobs))
}

// indexJobsSQLite adds a new task's jobs, all active, given as (device id,
// job id) pairs, to job_devices and active_jobs (see migration 00014), in
// device order: each table's pages are then written one after the other,
// where the jobs' rollout order would put every entry at a random page.
// (Sorted here, not by reading the jobs back into SQLite's sorter: that
// was 0.8 of 3.6 s of CPU creating 200,000 jobs.) active_jobs' key refuses
// a device whose module already has an active job.
func indexJobsSQLite(ctx context.Context, t *tx, module string, byDevice [][2]int64) error {
	sortByDevice(byDevice)
	for _, table := range []string{"job_devices (device_id, job_id, module)", "active_jobs (device_id, job_id, module)"} {
		for _, chunk := range chunks(byDevice, 2) {
			a := make(args, 0, 1+2*len(chunk))
			a = append(a, module)
			for _, p := range chunk {
				a = append(a, p[0], p[1])
			}
			q := `INSERT` + t.orRollback() + ` INTO ` + table + ` SELECT v.column1, v.column2, s.module
				FROM (SELECT $1 AS module) s, (VALUES ` + valuesAfter(len(chunk), 2, 1) + `) v`
			_, err := t.ExecContext(ctx, q, a...)
			if isUniqueViolation(err) {
				return busyDevice()
			}
			if err != nil {
				return fmt.Errorf("insert jobs by device: %w", err)
			}
		}
	}
	return nil
}

// sortByDevice sorts (device id, job id) pairs.
func sortByDevice(pairs [][2]int64) {
	slices.SortFunc(pairs, func(a, b [2]int64) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
}

// busyDevice is the error of a task that has a device with an active job
// on the task's module.
func busyDevice() error {
	return conflict("a device of this task is already being upgraded on this module by another task: create the task again to see which, or leave the busy devices out")
}

// newJobParams is the number of parameters of one new job's row: device_id,
// device, state, phase, seq and from_version (a new job is at its first
// attempt).
const newJobParams = 6

// newJobCounts counts new jobs per phase and state.
func newJobCounts(jobs []ota.Job) ota.PhaseCounts {
	counts := ota.PhaseCounts{}
	for _, j := range jobs {
		counts.Add(int(j.Phase), newJobState(j), 1)
	}
	return counts
}

// copyJobs writes a new task's jobs with PostgreSQL's COPY, in the
// transaction: one stream instead of a statement of 512 rows at a time.
// The jobs' ids are taken from the table's sequence first (COPY writes an
// identity column's given values, and returns none), so that their
// entries by device are copied too, sorted here (see indexJobs).
func copyJobs(ctx context.Context, t *tx, taskID int64, module string, jobs []ota.Job) error {
	cols := []string{"id", "task_id", "device_id", "device", "product", "module", "state", "phase", "seq", "from_version",
		"version", "created_at", "updated_at", "attempt"}
	if t.conn == nil {
		return errors.New("copy jobs: the transaction has no connection of its own (begin it with beginUnchecked)")
	}
	return t.conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("copy jobs: the driver's connection is a %T", dc)
		}
		c := sc.Conn()
		ids := make([]int64, 0, len(jobs))
		err := c.QueryRow(ctx, `SELECT array_agg(nextval(q.seq)) FROM (SELECT pg_get_serial_sequence('jobs', 'id')::regclass AS seq) q
			CROSS JOIN generate_series(1, $1)`, len(jobs)).Scan(&ids)
		if err != nil {
			return fmt.Errorf("take job ids: %w", err)
		}
		if len(ids) != len(jobs) {
			return fmt.Errorf("take job ids: %d ids for %d jobs", len(ids), len(jobs))
		}
		i := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(jobs) {
				return nil, nil
			}
			j := jobs[i]
			i++
			return []any{ids[i-1], taskID, j.DeviceID, j.Device, j.Product, j.Module, string(newJobState(j)), int32(j.Phase),
				int64(i), j.FromVersion, j.Version, t.now, t.now, int32(1)}, nil // a new job is at its first attempt
		})
		if _, err := c.CopyFrom(ctx, pgx.Identifier{"jobs"}, cols, src); err != nil {
			return fmt.Errorf("insert jobs: %w", err)
		}
		byDevice := make([][2]int64, len(jobs))
		for i, j := range jobs {
			jobs[i].ID = ids[i]
			byDevice[i] = [2]int64{j.DeviceID, ids[i]}
		}
		sortByDevice(byDevice)
		for _, table := range []string{"job_devices", "active_jobs"} {
			k := 0
			src := pgx.CopyFromFunc(func() ([]any, error) {
				if k == len(byDevice) {
					return nil, nil
				}
				k++
				return []any{byDevice[k-1][0], byDevice[k-1][1], module}, nil
			})
			_, err := c.CopyFrom(ctx, pgx.Identifier{table}, []string{"device_id", "job_id", "module"}, src)
			if isUniqueViolation(err) {
				return busyDevice()
			}
			if err != nil {
				return fmt.Errorf("insert jobs by device: %w", err)
			}
		}
		return nil
	})
}

// addCounts adds deltas to a task's counts.
func addCounts(ctx context.Context, t *tx, taskID int64, deltas ota.PhaseCounts) error {
	for phase, byState := range deltas {
		for state, n := range byState {
			if n == 0 {
				continue
			}
			_, err := t.ExecContext(ctx, `INSERT INTO task_counts (task_id, phase, state, n) VALUES ($1, $2, $3, $4)
				ON CONFLICT (task_id, phase, state) DO UPDATE SET n = task_counts.n + excluded.n`,
				taskID, phase, state, n)
			if err != nil {
				return fmt.Errorf("count jobs: %w", err)
			}
		}
	}
	return nil
}

// GetTask returns a task with its counts.
func (s *sqlStore) GetTask(ctx context.Context, id int64) (ota.Task, error) {
	task, _, err := scanTask(s.db.QueryRowContext(ctx, "SELECT "+taskColumns+" FROM tasks WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return task, taskNotFound(id)
	}
	if err != nil {
		return task, fmt.Errorf("get task %d: %w", id, err)
	}
	tasks := []ota.Task{task}
	if err := loadCounts(ctx, s.db, tasks); err != nil {
		return task, err
	}
	return tasks[0], nil
}

// ListTasks pages through tasks, newest first, with their counts.
func (s *sqlStore) ListTasks(ctx context.Context, f TaskFilter, page Page) ([]ota.Task, string, error) {
	limit, err := pageLimit(page)
	if err != nil {
		return nil, "", err
	}
	before, err := decodeIDCursor(page.After)
	if err != nil {
		return nil, "", err
	}
	var a args
	where := []string{"1 = 1"}
	if before > 0 {
		where = append(where, "id < "+a.add(before))
	}
	if f.Product != "" {
		where = append(where, "product = "+a.add(f.Product))
	}
	if f.FirmwareID != 0 {
		where = append(where, "firmware_id = "+a.add(f.FirmwareID))
	}
	if len(f.States) > 0 {
		where = append(where, "state IN ("+in(&a, f.States)+")")
	}
	q := "SELECT " + taskColumns + " FROM tasks WHERE " + strings.Join(where, " AND ") +
		" ORDER BY id DESC LIMIT " + a.add(limit+1)
	tasks, _, err := queryTasks(ctx, s.db, q, a)
	if err != nil {
		return nil, "", fmt.Errorf("list tasks: %w", err)
	}
	tasks, next := cutPage(tasks, limit, func(t ota.Task) string { return idKey(t.ID) })
	if err := loadCounts(ctx, s.db, tasks); err != nil {
		return nil, "", err
	}
	return tasks, next, nil
}

func queryTasks(ctx context.Context, q querier, query string, a args) ([]ota.Task, [][]byte, error) {
	rows, err := q.QueryContext(ctx, query, a...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var tasks []ota.Task
	var books [][]byte
	for rows.Next() {
		t, b, err := scanTask(rows)
		if err != nil {
			return nil, nil, err
		}
		tasks = append(tasks, t)
		books = append(books, b)
	}
	return tasks, books, rows.Err()
}

// ActiveTasks returns every task that is not terminal, for the engine.
func (s *sqlStore) ActiveTasks(ctx context.Context) ([]ota.ActiveTask, error) {
	q := "SELECT " + taskColumns + " FROM tasks WHERE state IN ($1, $2, $3) ORDER BY id"
	tasks, books, err := queryTasks(ctx, s.db, q, args{ota.TaskScheduled, ota.TaskRunning, ota.TaskPaused})
	if err != nil {
		return nil, fmt.Errorf("active tasks: %w", err)
	}
	if err := loadCounts(ctx, s.db, tasks); err != nil {
		return nil, err
	}
	out := make([]ota.ActiveTask, len(tasks))
	for i := range tasks {
		out[i] = ota.ActiveTask{Task: tasks[i], Engine: books[i]}
	}
	return out, nil
}

// loadCounts fills the Counts of tasks from task_counts in one query.
func loadCounts(ctx context.Context, q querier, tasks []ota.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	ids := make([]int64, len(tasks))
	index := make(map[int64]int, len(tasks))
	for i := range tasks {
		ids[i] = tasks[i].ID
		index[tasks[i].ID] = i
		tasks[i].Counts = map[ota.JobState]int64{}
	}
	var a args
	rows, err := q.QueryContext(ctx, "SELECT task_id, state, SUM(n) FROM task_counts WHERE task_id IN ("+
		in(&a, ids)+") GROUP BY task_id, state", a...)
	if err != nil {
		return fmt.Errorf("load task counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, n int64
		var state ota.JobState
		if err := rows.Scan(&id, &state, &n); err != nil {
			return err
		}
		if n != 0 {
			tasks[index[id]].Counts[state] = n
		}
	}
	return rows.Err()
}

// TaskPhaseCounts returns a task's counts per phase and state.
func (s *sqlStore) TaskPhaseCounts(ctx context.Context, taskID int64) (ota.PhaseCounts, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT phase, state, n FROM task_counts WHERE task_id = $1", taskID)
	if err != nil {
		return nil, fmt.Errorf("task %d counts: %w", taskID, err)
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

// updateTasks writes tasks' lifecycle fields, policy (operators edit it)
// and engine bookkeeping.
func updateTasks(ctx context.Context, t *tx, updates []ota.TaskUpdate) error {
	for _, u := range updates {
		task := u.Task
		engine := string(u.Engine)
		if engine == "" {
			engine = "{}"
		}
		policy, err := json.Marshal(task.Policy)
		if err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, `UPDATE tasks SET state = $1, phase = $2, reason = $3, engine = $4,
			started_at = $5, ended_at = $6, updated_at = $7, policy = $8 WHERE id = $9`,
			task.State, task.Phase, task.Reason, engine, nullTime(task.StartedAt), nullTime(task.EndedAt), t.now,
			string(policy), task.ID)
		if err != nil {
			return fmt.Errorf("update task %d: %w", task.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return taskNotFound(task.ID)
		}
	}
	return nil
}

// MarkFirmwareVerified records that a verification task released a
// firmware for batch tasks.
func (s *sqlStore) MarkFirmwareVerified(ctx context.Context, firmwareID, taskID int64, at time.Time) error {
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	res, err := t.ExecContext(ctx, `UPDATE firmware SET verified_by = $1, verified_at = $2 WHERE id = $3`,
		taskID, at.UTC(), firmwareID)
	if err != nil {
		return fmt.Errorf("mark firmware %d verified: %w", firmwareID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return firmwareNotFound(firmwareID)
	}
	e := ota.Event{Kind: ota.KindFirmware, Action: "verified", FirmwareID: firmwareID, TaskID: taskID,
		Message: fmt.Sprintf("verification task %d succeeded on every device", taskID)}
	if err := t.addEvent(ctx, e); err != nil {
		return err
	}
	return t.Commit()
}
