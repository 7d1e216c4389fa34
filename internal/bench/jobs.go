package bench

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// JobsConfig describes a job-start benchmark: the engine starting the jobs
// of one push task to every (online) device when only the store limits it.
type JobsConfig struct {
	Jobs int
	// DBURL is the database; empty means SQLite in DataDir. PostgreSQL
	// gets a fresh schema, dropped at the end unless KeepSchema.
	DBURL      string
	KeepSchema bool
	// Reuse opens the database as DBURL (its search_path naming a kept
	// schema) or DataDir names it: no fresh schema, nothing dropped.
	Reuse bool
	// DataDir holds the SQLite file; empty uses a temporary folder.
	DataDir string
	// BatchSize is the engine's batch size; 0 means its default.
	BatchSize int
	// CPUProfile, when set, receives a CPU profile of the measured part
	// (the task's creation and its jobs' start).
	CPUProfile string
	// CreateOnly stops once the task is created: its jobs are not
	// started (the quick measure of creation alone).
	CreateOnly bool
	Timeout    time.Duration
	Progress   io.Writer
	// appName names the store's PostgreSQL connections, so that their
	// backends' CPU time can be read.
	appName string
}

// JobsReport is what a job-start benchmark measured.
type JobsReport struct {
	Jobs     int    `json:"jobs"`
	Database string `json:"database"`
	// CreateDevices and MarkOnline are the setup: devices created and
	// marked connected through the store, in chunks of 10,000.
	CreateDevices time.Duration `json:"create_devices_ns"`
	MarkOnline    time.Duration `json:"mark_online_ns"`
	// CreateTask is engine.CreateTask: targets resolved, jobs stored.
	CreateTask time.Duration `json:"create_task_ns"`
	// Start runs from CreateTask's return until every job is notified.
	Start time.Duration `json:"start_ns"`
	// CreateTaskCPU and StartCPU are this process's CPU time (user and
	// system) over the same spans: on a shared machine, the figure to
	// compare from run to run.
	CreateTaskCPU time.Duration `json:"create_task_cpu_ns"`
	StartCPU      time.Duration `json:"start_cpu_ns"`
	// CreateTaskDBCPU and StartDBCPU are the PostgreSQL backends' CPU
	// time over the same spans, when they run on this host (0 on
	// SQLite, whose work is in this process's figures).
	CreateTaskDBCPU time.Duration `json:"create_task_db_cpu_ns"`
	StartDBCPU      time.Duration `json:"start_db_cpu_ns"`
	JobsPerSecond   float64       `json:"jobs_per_second"`
	// SteadyJobsPerSecond is the rate between 10% and 90% started.
	SteadyJobsPerSecond float64 `json:"steady_jobs_per_second"`
	// FirstTenth and LastTenth are the rates over the first and the last
	// 10% of the jobs: a rate that falls shows a cost growing with the
	// jobs already started.
	FirstTenth float64 `json:"first_tenth_jobs_per_second"`
	LastTenth  float64 `json:"last_tenth_jobs_per_second"`
	// Commits and CommitMean come from otter_engine_commit_seconds.
	Commits    int64         `json:"commits"`
	CommitMean time.Duration `json:"commit_mean_ns"`
}

// jobsChunk is how many devices are created or marked online per call.
const jobsChunk = 10000

// RunJobs measures how fast the engine starts queued jobs.
func RunJobs(ctx context.Context, cfg JobsConfig) (rep *JobsReport, err error) {
	if cfg.Jobs <= 0 {
		return nil, errors.New("bench: jobs needs at least one job")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Hour
	}
	var backends *pgBackends
	if isPostgres(cfg.DBURL) {
		if backends, err = newPGBackends(cfg.DBURL); err != nil {
			return nil, err
		}
		defer func() { err = errors.Join(err, backends.Close()) }()
		cfg.appName = backends.app
	}
	st, closeStore, err := openJobsStore(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, closeStore()) }()
	rep = &JobsReport{Jobs: cfg.Jobs, Database: dbKind(cfg.DBURL)}
	fw, err := seedJobs(ctx, st, cfg, rep)
	if err != nil {
		return nil, err
	}
	return rep, startJobs(ctx, st, fw, cfg, rep, backends)
}

// openJobsStore opens the benchmark's database and returns how to close
// and remove it.
func openJobsStore(ctx context.Context, cfg *JobsConfig) (store.Store, func() error, error) {
	opts := ServerOptions{DataDir: cfg.DataDir, DBURL: cfg.DBURL, KeepSchema: cfg.KeepSchema || cfg.Reuse, reuse: cfg.Reuse}
	var cleanups []func() error
	cleanup := func() error {
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			errs = append(errs, cleanups[i]())
		}
		return errors.Join(errs...)
	}
	if err := opts.prepare(ctx, &cleanups); err != nil {
		return nil, nil, errors.Join(err, cleanup())
	}
	url := opts.DBURL
	// PostgreSQL's fresh schema and the data folder, for the caller.
	cfg.DBURL, cfg.DataDir = url, opts.DataDir
	if url == "" {
		url = "sqlite:" + filepath.Join(opts.DataDir, "otter.db")
	}
	if cfg.appName != "" {
		named, err := withAppName(url, cfg.appName)
		if err != nil {
			return nil, nil, errors.Join(err, cleanup())
		}
		url = named
	}
	st, err := store.Open(ctx, url, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("open the database: %w", err), cleanup())
	}
	return st, func() error { return errors.Join(st.Close(), cleanup()) }, nil
}

// seedJobs creates the product, the devices (on 1.0.0, online) and a
// signed firmware 2.0.0.
func seedJobs(ctx context.Context, st store.Store, cfg JobsConfig, rep *JobsReport) (ota.Firmware, error) {
	say(cfg.Progress, "creating %d devices", cfg.Jobs)
	if err := st.CreateProduct(ctx, &ota.Product{Key: benchProduct, Name: "Benchmark"}); err != nil {
		return ota.Firmware{}, err
	}
	t0 := time.Now()
	ids, err := createDevices(ctx, st, cfg.Jobs, cfg.Progress)
	if err != nil {
		return ota.Firmware{}, err
	}
	rep.CreateDevices = time.Since(t0)
	say(cfg.Progress, "marking %d devices online", cfg.Jobs)
	t0 = time.Now()
	if err := markOnline(ctx, st, ids); err != nil {
		return ota.Firmware{}, err
	}
	rep.MarkOnline = time.Since(t0)
	return createSignedFirmware(ctx, st)
}

func createDevices(ctx context.Context, st store.Store, n int, progress io.Writer) ([]int64, error) {
	ids := make([]int64, 0, n)
	for start := 0; start < n; start += jobsChunk {
		devs := make([]store.NewDevice, 0, jobsChunk)
		for i := start; i < min(n, start+jobsChunk); i++ {
			devs = append(devs, store.NewDevice{
				Product: benchProduct, Key: fmt.Sprintf("d%07d", i), SecretHash: []byte("benchmark"),
				Versions: map[string]string{ota.DefaultModule: "1.0.0"},
			})
		}
		created, err := st.CreateDevices(ctx, devs)
		if err != nil {
			return nil, fmt.Errorf("create devices: %w", err)
		}
		for _, d := range created {
			ids = append(ids, d.ID)
		}
		if (start/jobsChunk)%10 == 9 {
			say(progress, "  %d devices", len(ids))
		}
	}
	return ids, nil
}

// markOnline records the devices as connected, as the broker does when
// they connect.
func markOnline(ctx context.Context, st store.Store, ids []int64) error {
	now := time.Now()
	for start := 0; start < len(ids); start += jobsChunk {
		var c ota.ChangeSet
		for _, id := range ids[start:min(len(ids), start+jobsChunk)] {
			c.Presence = append(c.Presence, ota.Presence{DeviceID: id, Online: true, At: now})
		}
		if _, err := st.Apply(ctx, c); err != nil {
			return fmt.Errorf("mark devices online: %w", err)
		}
	}
	return nil
}

func createSignedFirmware(ctx context.Context, st store.Store) (ota.Firmware, error) {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return ota.Firmware{}, err
	}
	fw := ota.Firmware{Product: benchProduct, Module: ota.DefaultModule, Version: "2.0.0", Size: 65536,
		SHA256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", BlobKey: "benchmark"}
	fw.Signature = wire.Manifest{Product: fw.Product, Module: fw.Module, Version: fw.Version, Size: fw.Size, SHA256: fw.SHA256}.Sign(key)
	if err := st.CreateFirmware(ctx, &fw); err != nil {
		return fw, fmt.Errorf("create the firmware: %w", err)
	}
	return fw, nil
}

// discard is a Downlink that drops every message: only the store limits
// the engine.
type discard struct{}

func (discard) Send(string, string, string, []byte) {}

// fixedURLs signs no URL: nothing downloads.
type fixedURLs struct{}

func (fixedURLs) DownloadURL(string, string, int64) string { return "http://127.0.0.1:1/dl/benchmark" }

// startJobs runs the engine, creates the task and waits until every job
// is notified (or, with CreateOnly, returns once it is created).
func startJobs(ctx context.Context, st store.Store, fw ota.Firmware, cfg JobsConfig, rep *JobsReport, db *pgBackends) error {
	reg := prometheus.NewRegistry()
	e, err := engine.New(engine.Config{Store: st, Downlink: discard{}, URLs: fixedURLs{}, Metrics: reg,
		Logger: slog.New(slog.DiscardHandler), BatchSize: cfg.BatchSize})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() { stop(); <-done }()
	stopProfile, err := startCPUProfile(cfg.CPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	say(cfg.Progress, "creating a push task to %d devices", cfg.Jobs)
	spec := ota.TaskSpec{Name: "bench", FirmwareID: fw.ID, Mode: ota.ModePush, Target: ota.Target{All: true}}
	if cfg.CreateOnly {
		// Its start a day ahead, so that the engine leaves its jobs queued.
		later := time.Now().Add(24 * time.Hour)
		spec.Policy.Start = &later
	}
	db0, err := db.cpu(ctx)
	if err != nil {
		return err
	}
	t0, cpu0 := time.Now(), selfCPU()
	task, err := e.CreateTask(ctx, spec)
	if err != nil {
		return fmt.Errorf("create the task: %w", err)
	}
	rep.CreateTask, rep.CreateTaskCPU = time.Since(t0), selfCPU()-cpu0
	db1, err := db.cpu(ctx)
	if err != nil {
		return err
	}
	rep.CreateTaskDBCPU = db1.since(db0)
	say(cfg.Progress, "task %d created with %d jobs in %s", task.ID, task.Total, rep.CreateTask.Round(time.Millisecond))
	if cfg.CreateOnly {
		return checkCreated(ctx, st, task.ID, cfg.Jobs)
	}
	if err := waitStarted(ctx, st, reg, task.ID, cfg, rep); err != nil {
		return err
	}
	db2, err := db.cpu(ctx)
	if err != nil {
		return err
	}
	rep.StartDBCPU = db2.since(db1)
	return checkNotified(ctx, st, task.ID, cfg.Jobs)
}

func checkCreated(ctx context.Context, st store.Store, taskID int64, jobs int) error {
	t, err := st.GetTask(ctx, taskID)
	if err != nil {
		return fmt.Errorf("read the task: %w", err)
	}
	if n := t.Counts[ota.JobQueued]; n != int64(jobs) || t.Total != int64(jobs) {
		return fmt.Errorf("the task counts %v of %d jobs: want all %d queued", t.Counts, t.Total, jobs)
	}
	return nil
}

// progressPoint is the number of jobs started at a time.
type progressPoint struct {
	at      time.Time
	started float64
}

// waitStarted samples the engine's started-jobs counter until every job is
// started, then checks the task's counts in the store.
func waitStarted(ctx context.Context, st store.Store, reg *prometheus.Registry, taskID int64, cfg JobsConfig, rep *JobsReport) error {
	t0, cpu0 := time.Now(), selfCPU()
	points := []progressPoint{{at: t0}}
	deadline := t0.Add(cfg.Timeout)
	for points[len(points)-1].started < float64(cfg.Jobs) {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %.0f of %d jobs started after %s", points[len(points)-1].started, cfg.Jobs, cfg.Timeout)
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return err
		}
		m, err := Gather(reg)
		if err != nil {
			return err
		}
		points = append(points, progressPoint{at: time.Now(), started: m["otter_engine_jobs_started_total"]})
	}
	rep.Start, rep.StartCPU = points[len(points)-1].at.Sub(t0), selfCPU()-cpu0
	rep.JobsPerSecond = float64(cfg.Jobs) / rep.Start.Seconds()
	rep.SteadyJobsPerSecond = rateBetween(points, 0.1*float64(cfg.Jobs), 0.9*float64(cfg.Jobs))
	rep.FirstTenth = rateBetween(points, 0, 0.1*float64(cfg.Jobs))
	rep.LastTenth = rateBetween(points, 0.9*float64(cfg.Jobs), float64(cfg.Jobs))
	m, err := Gather(reg)
	if err != nil {
		return err
	}
	if n := m["otter_engine_commit_seconds_count"]; n > 0 {
		rep.Commits = int64(n)
		rep.CommitMean = time.Duration(m["otter_engine_commit_seconds_sum"] / n * float64(time.Second))
	}
	say(cfg.Progress, "%d jobs started in %s", cfg.Jobs, rep.Start.Round(time.Millisecond))
	return nil
}

// rateBetween is the rate at which started went from lo to hi: from the
// last point at or below lo to the first at or above hi.
func rateBetween(points []progressPoint, lo, hi float64) float64 {
	var from, to *progressPoint
	for i := range points {
		p := &points[i]
		if p.started <= lo {
			from = p
		}
		if p.started >= hi && to == nil {
			to = p
		}
	}
	if from == nil || to == nil || !to.at.After(from.at) {
		return 0
	}
	return (to.started - from.started) / to.at.Sub(from.at).Seconds()
}

func checkNotified(ctx context.Context, st store.Store, taskID int64, jobs int) error {
	t, err := st.GetTask(ctx, taskID)
	if err != nil {
		return fmt.Errorf("read the task: %w", err)
	}
	if n := t.Counts[ota.JobNotified]; n != int64(jobs) || t.Total != int64(jobs) {
		return fmt.Errorf("the task counts %v of %d jobs: want all %d notified", t.Counts, t.Total, jobs)
	}
	return nil
}

func say(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

// Gather reads a registry in this process into Metrics: counters and
// gauges by name, summed over labels; histograms as NAME_sum and
// NAME_count.
func Gather(g prometheus.Gatherer) (Metrics, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	out := Metrics{}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[name] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[name+"_sum"] += m.GetHistogram().GetSampleSum()
				out[name+"_count"] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out, nil
}

// selfCPU is this process's CPU time so far, user and system; zero
// where the system does not say.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
