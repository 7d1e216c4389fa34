package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// ListsConfig describes a list benchmark: the pages the console and the
// API serve, read by concurrent readers from N devices, N jobs of one task
// and N events.
type ListsConfig struct {
	Rows       int
	DBURL      string
	KeepSchema bool
	DataDir    string
	// Readers read at once (8 by default); each reads Requests pages of
	// every list (50 by default), from random places.
	Readers, Requests int
	// WhileStarting runs the readers while the engine starts the task's
	// queued jobs at full speed (no rate limit, no concurrency limit).
	WhileStarting bool
	Progress      io.Writer
}

// ListsReport is the latency of each list under concurrent readers.
type ListsReport struct {
	Rows     int          `json:"rows"`
	Database string       `json:"database"`
	Readers  int          `json:"readers"`
	Lists    []ListResult `json:"lists"`
	// WhileStarting says the engine was starting jobs during the reads;
	// JobsStarted is how many it started meanwhile, JobsPerSecond at what
	// rate.
	WhileStarting bool    `json:"while_starting,omitempty"`
	JobsStarted   int64   `json:"jobs_started,omitempty"`
	JobsPerSecond float64 `json:"jobs_per_second,omitempty"`
}

// ListResult is one list's page latency.
type ListResult struct {
	Name    string  `json:"name"`
	Latency Latency `json:"latency"`
	// CPU is the process's CPU time per request (readers, garbage
	// collector, and the engine when it runs), a figure that the other
	// programs on the machine change less than the latency.
	CPU time.Duration `json:"cpu_per_request_ns"`
}

// listCase reads one page of a list after a cursor.
type listCase struct {
	name string
	read func(ctx context.Context, st store.Store, after string) error
	// ids are the ids the list's pages start after: a tenth of the pages
	// start at the first, the others at a tenth, two tenths... of the way
	// from first to last.
	first, last int64
}

// cursor returns the cursor of the k-th of ten pages, "" for the first.
func (c listCase) cursor(k int) string {
	if k == 0 {
		return ""
	}
	return store.IDCursor(c.first + (c.last-c.first)*int64(k)/10)
}

// RunLists seeds the rows and measures every list.
func RunLists(ctx context.Context, cfg ListsConfig) (rep *ListsReport, err error) {
	if cfg.Rows <= 0 {
		return nil, errors.New("bench: lists needs at least one row")
	}
	cfg.Readers, cfg.Requests = cmp0(cfg.Readers, 8), cmp0(cfg.Requests, 50)
	jc := &JobsConfig{DBURL: cfg.DBURL, KeepSchema: cfg.KeepSchema, DataDir: cfg.DataDir}
	st, closeStore, err := openJobsStore(ctx, jc)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, closeStore()) }()
	seed, err := seedLists(ctx, st, cfg)
	if err != nil {
		return nil, err
	}
	if isPostgres(jc.DBURL) {
		// Seeding updated every device and one job in ten: until the
		// autovacuum passes, the indexes hold the rows' old versions, which
		// a scan visits, and the planner has no statistics.
		say(cfg.Progress, "vacuuming and analysing the tables")
		pg, err := pgx.ParseConfig(jc.DBURL)
		if err != nil {
			return nil, err
		}
		if err := execPostgres(ctx, pg, "VACUUM ANALYZE devices, device_versions, device_tags, jobs, task_counts, events"); err != nil {
			return nil, err
		}
	}
	rep = &ListsReport{Rows: cfg.Rows, Database: dbKind(cfg.DBURL), Readers: cfg.Readers, WhileStarting: cfg.WhileStarting}
	read := func() error { return measureLists(ctx, st, seed, cfg, rep) }
	if !cfg.WhileStarting {
		return rep, read()
	}
	return rep, whileStarting(ctx, st, seed, cfg, rep, read)
}

func measureLists(ctx context.Context, st store.Store, seed listsSeed, cfg ListsConfig, rep *ListsReport) error {
	for _, c := range listCases(seed) {
		say(cfg.Progress, "reading %s", c.name)
		res, err := measureList(ctx, st, c, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		rep.Lists = append(rep.Lists, res)
	}
	return nil
}

// whileStarting runs the engine on the seeded task and calls read once the
// engine is starting jobs; it fails if the engine ran out of jobs to start
// before read returned, since the last reads would then have measured an
// idle engine.
func whileStarting(ctx context.Context, st store.Store, seed listsSeed, cfg ListsConfig, rep *ListsReport, read func() error) error {
	reg := prometheus.NewRegistry()
	e, err := engine.New(engine.Config{Store: st, Downlink: discard{}, URLs: fixedURLs{}, Metrics: reg,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() { stop(); <-done }()
	started := func() (float64, error) {
		m, err := Gather(reg)
		return m["otter_engine_jobs_started_total"], err
	}
	say(cfg.Progress, "starting the engine on %d startable jobs", seed.startable)
	for {
		n, err := started()
		if err != nil {
			return err
		}
		if n > 0 {
			break
		}
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	n0, err := started()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := read(); err != nil {
		return err
	}
	n1, err := started()
	if err != nil {
		return err
	}
	rep.JobsStarted = int64(n1 - n0)
	rep.JobsPerSecond = (n1 - n0) / time.Since(t0).Seconds()
	say(cfg.Progress, "the engine started %d jobs while the readers read (%.0f a second)", rep.JobsStarted, rep.JobsPerSecond)
	if int64(n1) >= seed.startable {
		return fmt.Errorf("the engine started all %d startable jobs before the readers were done: use more rows", seed.startable)
	}
	return nil
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// listsSeed is what seedLists made.
type listsSeed struct {
	task ota.Task
	// The ids of the devices, the task's jobs and the events of its jobs
	// run from first to last.
	firstDevice, lastDevice, firstJob, lastJob, firstEvent, lastEvent int64
	// startable is the number of queued jobs of online devices: the jobs
	// the engine can start.
	startable int64
}

// seedLists creates N devices (every other one online), a task with N jobs
// (one in ten succeeded, one in a thousand failed, the rest queued) and N
// events of that task's jobs.
func seedLists(ctx context.Context, st store.Store, cfg ListsConfig) (listsSeed, error) {
	var seed listsSeed
	fw, err := seedJobs(ctx, st, JobsConfig{Jobs: cfg.Rows, Progress: cfg.Progress}, &JobsReport{})
	if err != nil {
		return seed, err
	}
	say(cfg.Progress, "creating a task of %d jobs", cfg.Rows)
	devs, _, err := st.ListDevices(ctx, store.DeviceFilter{Product: benchProduct}, store.Page{Limit: 1})
	if err != nil || len(devs) == 0 {
		return seed, errors.Join(err, errors.New("bench: no device"))
	}
	jobs := make([]ota.Job, cfg.Rows)
	for i := range jobs {
		jobs[i] = ota.Job{DeviceID: devs[0].ID + int64(i), Device: fmt.Sprintf("d%07d", i), Product: benchProduct,
			Module: ota.DefaultModule, State: seededState(i), FromVersion: "1.0.0", Version: fw.Version}
		if i%2 == 0 && jobs[i].State == ota.JobQueued {
			seed.startable++
		}
	}
	task := ota.Task{Product: benchProduct, Module: ota.DefaultModule, FirmwareID: fw.ID, Version: fw.Version,
		Mode: ota.ModePush, State: ota.TaskRunning, Total: int64(cfg.Rows)}
	if err := st.CreateTask(ctx, &task, jobs); err != nil {
		return seed, fmt.Errorf("create the task: %w", err)
	}
	seed.task = task
	if err := finishSeededJobs(ctx, st, task.ID, cfg.Progress); err != nil {
		return seed, err
	}
	if err := markOddOffline(ctx, st, devs[0].ID, cfg.Rows, cfg.Progress); err != nil {
		return seed, err
	}
	if err := seedEvents(ctx, st, task, jobs, cfg.Progress); err != nil {
		return seed, err
	}
	seed.firstDevice, seed.lastDevice = devs[0].ID, devs[0].ID+int64(cfg.Rows)-1
	first, _, err := st.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, store.Page{Limit: 1})
	if err != nil || len(first) == 0 {
		return seed, errors.Join(err, errors.New("bench: no job"))
	}
	seed.firstJob, seed.lastJob = first[0].ID, first[0].ID+int64(cfg.Rows)-1
	newest, _, err := st.ListEvents(ctx, store.EventFilter{}, store.Page{Limit: 1})
	if err != nil || len(newest) == 0 {
		return seed, errors.Join(err, errors.New("bench: no event"))
	}
	seed.firstEvent, seed.lastEvent = newest[0].ID-int64(cfg.Rows)+1, newest[0].ID
	return seed, nil
}

// seededState is the state of the task's job i: one in a thousand failed,
// one in ten succeeded, the rest queued.
func seededState(i int) ota.JobState {
	switch {
	case i%1000 == 7:
		return ota.JobFailed
	case i%10 == 3:
		return ota.JobSucceeded
	}
	return ota.JobQueued
}

// finishSeededJobs moves the jobs that seededState says finished to their
// state: a new task's jobs are all queued.
func finishSeededJobs(ctx context.Context, st store.Store, taskID int64, progress io.Writer) error {
	say(progress, "finishing one job in ten")
	now := time.Now().UTC()
	var c ota.ChangeSet
	apply := func() error {
		_, err := st.Apply(ctx, c)
		c = ota.ChangeSet{}
		return err
	}
	page := store.Page{Limit: store.MaxPageSize}
	for i := 0; ; {
		jobs, next, err := st.ListJobs(ctx, store.JobFilter{TaskID: taskID}, page)
		if err != nil {
			return fmt.Errorf("read the seeded jobs: %w", err)
		}
		for _, j := range jobs {
			if state := seededState(i); state != j.State {
				n := j
				n.State, n.UpdatedAt = state, now
				if state == ota.JobFailed {
					n.Code = "install_failed"
				}
				c.Jobs = append(c.Jobs, ota.JobUpdate{Old: j, New: n})
			}
			i++
		}
		if len(c.Jobs) >= jobsChunk || next == "" {
			if err := apply(); err != nil {
				return fmt.Errorf("finish seeded jobs: %w", err)
			}
		}
		if next == "" {
			return nil
		}
		page.After = next
	}
}

// markOddOffline records every other device (the odd ones from the first)
// as disconnected, so that "online" filters half of them.
func markOddOffline(ctx context.Context, st store.Store, firstID int64, n int, progress io.Writer) error {
	say(progress, "marking %d devices offline", n/2)
	now := time.Now()
	var c ota.ChangeSet
	for i := 1; i < n; i += 2 {
		c.Presence = append(c.Presence, ota.Presence{DeviceID: firstID + int64(i), Online: false, At: now})
		if len(c.Presence) == jobsChunk || i+2 >= n {
			if _, err := st.Apply(ctx, c); err != nil {
				return fmt.Errorf("mark devices offline: %w", err)
			}
			c = ota.ChangeSet{}
		}
	}
	return nil
}

func seedEvents(ctx context.Context, st store.Store, task ota.Task, jobs []ota.Job, progress io.Writer) error {
	say(progress, "creating %d events", len(jobs))
	now := time.Now()
	for start := 0; start < len(jobs); start += jobsChunk {
		var c ota.ChangeSet
		for _, j := range jobs[start:min(len(jobs), start+jobsChunk)] {
			c.Events = append(c.Events, ota.Event{At: now, Actor: "engine", Kind: ota.KindJob, Action: string(j.State),
				Product: benchProduct, Device: j.Device, TaskID: task.ID, FirmwareID: task.FirmwareID})
		}
		if _, err := st.Apply(ctx, c); err != nil {
			return fmt.Errorf("create events: %w", err)
		}
	}
	return nil
}

func listCases(seed listsSeed) []listCase {
	task := seed.task
	// The API reads the task before its jobs, to answer 404 for an unknown
	// task: a page of a task's jobs costs both.
	jobs := func(states ...ota.JobState) func(context.Context, store.Store, string) error {
		return func(ctx context.Context, st store.Store, after string) error {
			if _, err := st.GetTask(ctx, task.ID); err != nil {
				return err
			}
			_, _, err := st.ListJobs(ctx, store.JobFilter{TaskID: task.ID, States: states}, store.Page{Limit: 100, After: after})
			return err
		}
	}
	online := true
	devices := func(f store.DeviceFilter) func(context.Context, store.Store, string) error {
		return func(ctx context.Context, st store.Store, after string) error {
			_, _, err := st.ListDevices(ctx, f, store.Page{Limit: 100, After: after})
			return err
		}
	}
	events := func(f store.EventFilter) func(context.Context, store.Store, string) error {
		return func(ctx context.Context, st store.Store, after string) error {
			_, _, err := st.ListEvents(ctx, f, store.Page{Limit: 100, After: after})
			return err
		}
	}
	// Events are listed newest first: their pages start after ids that
	// run down from the newest.
	ev := func(name string, f store.EventFilter) listCase {
		return listCase{name, events(f), seed.lastEvent, seed.firstEvent}
	}
	return []listCase{
		{"task status", func(ctx context.Context, st store.Store, _ string) error {
			_, err := st.GetTask(ctx, task.ID)
			return err
		}, 0, 0},
		{"task jobs", jobs(), seed.firstJob, seed.lastJob},
		{"task jobs, state queued", jobs(ota.JobQueued), seed.firstJob, seed.lastJob},
		{"task jobs, state failed (0.1%)", jobs(ota.JobFailed), seed.firstJob, seed.lastJob},
		{"task jobs, states succeeded+failed", jobs(ota.JobSucceeded, ota.JobFailed), seed.firstJob, seed.lastJob},
		{"devices of the product", devices(store.DeviceFilter{Product: benchProduct}), seed.firstDevice, seed.lastDevice},
		{"devices online (50%)", devices(store.DeviceFilter{Product: benchProduct, Online: &online}), seed.firstDevice, seed.lastDevice},
		ev("events", store.EventFilter{}),
		ev("events of the task", store.EventFilter{TaskID: task.ID}),
		ev("events of kind job", store.EventFilter{Kind: ota.KindJob}),
		ev("events of a device", store.EventFilter{Product: benchProduct, Device: "d0000001"}),
	}
}

// measureList runs Readers goroutines reading Requests pages each; page i
// starts after a cursor spread over the ids, the first page included.
//
// A reader yields its core before each request. An API server's handler
// waits for its next request on the network, so the runtime runs the
// handlers in turn; a loop that never blocks instead keeps its core until
// the runtime preempts it, after 10 ms, and with 8 readers on 2 cores the
// request caught by that preemption waits for three others' 10 ms turns:
// a 30 ms p99 that measures the loop, not the list.
func measureList(ctx context.Context, st store.Store, c listCase, cfg ListsConfig) (ListResult, error) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Readers)
	u0, err := ReadUsage(os.Getpid())
	if err != nil {
		return ListResult{}, err
	}
	for r := range cfg.Readers {
		wg.Go(func() {
			for i := range cfg.Requests {
				after := c.cursor((r*cfg.Requests + i) % 10)
				runtime.Gosched()
				t0 := time.Now()
				if err := c.read(ctx, st, after); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				all = append(all, time.Since(t0))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return ListResult{}, err
	}
	u1, err := ReadUsage(os.Getpid())
	if err != nil {
		return ListResult{}, err
	}
	slices.Sort(all)
	return ListResult{Name: c.name, Latency: latency(all), CPU: (u1.CPU - u0.CPU) / time.Duration(len(all))}, nil
}
