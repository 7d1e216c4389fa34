package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

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
	Progress          io.Writer
}

// ListsReport is the latency of each list under concurrent readers.
type ListsReport struct {
	Rows     int          `json:"rows"`
	Database string       `json:"database"`
	Readers  int          `json:"readers"`
	Lists    []ListResult `json:"lists"`
}

// ListResult is one list's page latency.
type ListResult struct {
	Name    string  `json:"name"`
	Latency Latency `json:"latency"`
}

// listCase reads one page of a list after a cursor.
type listCase struct {
	name string
	read func(ctx context.Context, st store.Store, after string) error
}

// RunLists seeds the rows and measures every list.
func RunLists(ctx context.Context, cfg ListsConfig) (rep *ListsReport, err error) {
	if cfg.Rows <= 0 {
		return nil, errors.New("bench: lists needs at least one row")
	}
	cfg.Readers, cfg.Requests = cmp0(cfg.Readers, 8), cmp0(cfg.Requests, 50)
	st, closeStore, err := openJobsStore(ctx, &JobsConfig{DBURL: cfg.DBURL, KeepSchema: cfg.KeepSchema, DataDir: cfg.DataDir})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, closeStore()) }()
	task, err := seedLists(ctx, st, cfg)
	if err != nil {
		return nil, err
	}
	rep = &ListsReport{Rows: cfg.Rows, Database: dbKind(cfg.DBURL), Readers: cfg.Readers}
	for _, c := range listCases(task) {
		say(cfg.Progress, "reading %s", c.name)
		lat, err := measureList(ctx, st, c, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		rep.Lists = append(rep.Lists, ListResult{Name: c.name, Latency: lat})
	}
	return rep, nil
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// seedLists creates N devices (half online), a task with N jobs (one in
// ten succeeded, one in a thousand failed, the rest queued) and N events
// of that task's jobs.
func seedLists(ctx context.Context, st store.Store, cfg ListsConfig) (ota.Task, error) {
	fw, err := seedJobs(ctx, st, JobsConfig{Jobs: cfg.Rows, Progress: cfg.Progress}, &JobsReport{})
	if err != nil {
		return ota.Task{}, err
	}
	say(cfg.Progress, "creating a task of %d jobs", cfg.Rows)
	devs, _, err := st.ListDevices(ctx, store.DeviceFilter{Product: benchProduct}, store.Page{Limit: 1})
	if err != nil || len(devs) == 0 {
		return ota.Task{}, errors.Join(err, errors.New("bench: no device"))
	}
	jobs := make([]ota.Job, cfg.Rows)
	for i := range jobs {
		state := ota.JobQueued
		switch {
		case i%1000 == 7:
			state = ota.JobFailed
		case i%10 == 3:
			state = ota.JobSucceeded
		}
		jobs[i] = ota.Job{DeviceID: devs[0].ID + int64(i), Device: fmt.Sprintf("d%07d", i), Product: benchProduct,
			Module: ota.DefaultModule, State: state, FromVersion: "1.0.0", Version: fw.Version}
	}
	task := ota.Task{Product: benchProduct, Module: ota.DefaultModule, FirmwareID: fw.ID, Version: fw.Version,
		Mode: ota.ModePush, State: ota.TaskRunning, Total: int64(cfg.Rows)}
	if err := st.CreateTask(ctx, &task, jobs); err != nil {
		return task, fmt.Errorf("create the task: %w", err)
	}
	return task, seedEvents(ctx, st, task, jobs, cfg.Progress)
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

func listCases(task ota.Task) []listCase {
	jobs := func(states ...ota.JobState) func(context.Context, store.Store, string) error {
		return func(ctx context.Context, st store.Store, after string) error {
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
	return []listCase{
		{"task jobs", jobs()},
		{"task jobs, state queued", jobs(ota.JobQueued)},
		{"task jobs, state failed (0.1%)", jobs(ota.JobFailed)},
		{"task jobs, states succeeded+failed", jobs(ota.JobSucceeded, ota.JobFailed)},
		{"devices of the product", devices(store.DeviceFilter{Product: benchProduct})},
		{"devices online", devices(store.DeviceFilter{Product: benchProduct, Online: &online})},
		{"events", events(store.EventFilter{})},
		{"events of the task", events(store.EventFilter{TaskID: task.ID})},
		{"events of kind job", events(store.EventFilter{Kind: ota.KindJob})},
	}
}

// measureList runs Readers goroutines reading Requests pages each; page i
// starts after a cursor spread over the ids, the first page included.
func measureList(ctx context.Context, st store.Store, c listCase, cfg ListsConfig) (Latency, error) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Readers)
	for r := range cfg.Readers {
		wg.Go(func() {
			for i := range cfg.Requests {
				after := ""
				if k := (r*cfg.Requests + i) % 10; k > 0 {
					after = store.IDCursor(int64(cfg.Rows * k / 10))
				}
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
		return Latency{}, err
	}
	slices.Sort(all)
	return latency(all), nil
}
