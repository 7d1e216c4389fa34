package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// ListsConfig describes a list benchmark: the pages the console and the
// API serve, read over HTTP by concurrent readers from N devices, N jobs
// of one task and N events.
type ListsConfig struct {
	Rows       int
	DBURL      string
	KeepSchema bool
	DataDir    string
	// Reuse reads the database that a run with KeepSchema left in
	// DataDir (of as many rows; on PostgreSQL, the schema that DataDir's
	// file keptSchemaFile names) instead of seeding one.
	Reuse bool
	// Executable, when set, runs the server in a process of its own as
	// `Executable bench server ...`, so that its CPU time is its own;
	// empty runs it in this process, whose CPU time then includes the
	// readers'.
	Executable string
	// Readers read at once (8 by default); each reads Requests pages of
	// every list (50 by default), from places spread through the list.
	Readers, Requests int
	// WhileStarting runs the readers while the server's engine starts the
	// task's queued jobs at full speed (no rate limit, no concurrency
	// limit).
	WhileStarting bool
	// Cold skips the readers' untimed first read of every page (see
	// listReader.check): the first use of each list on each of the
	// server's database connections is then timed too.
	Cold bool
	// CPUProfile, when set, is where the server writes a CPU profile of
	// its life (mostly the reads).
	CPUProfile string
	Progress   io.Writer
}

// ListsReport is the latency of each list under concurrent readers, as a
// client of the API sees it.
type ListsReport struct {
	Rows     int          `json:"rows"`
	Database string       `json:"database"`
	Readers  int          `json:"readers"`
	Lists    []ListResult `json:"lists"`
	// SeparateServer says the server had its process to itself: its CPU
	// time excludes the readers'.
	SeparateServer bool `json:"separate_server"`
	// WhileStarting says the engine was starting jobs during the reads;
	// JobsStarted is how many it started meanwhile, JobsPerSecond at what
	// rate.
	WhileStarting bool    `json:"while_starting,omitempty"`
	JobsStarted   int64   `json:"jobs_started,omitempty"`
	JobsPerSecond float64 `json:"jobs_per_second,omitempty"`
	// ReadSeconds is how long the reads took, EngineYield how much of it
	// the engine's job starts spent waiting for reads in flight (the
	// reads go first: otter_engine_read_yield_seconds_total).
	ReadSeconds float64 `json:"read_seconds,omitempty"`
	EngineYield float64 `json:"engine_read_yield_seconds,omitempty"`
	// EngineCPUPerJob is the server's CPU time per job started while the
	// engine started jobs alone, just before the reads (up to a second):
	// what each list's EngineCPU is estimated from.
	EngineCPUPerJob time.Duration `json:"engine_cpu_per_job_ns,omitempty"`
}

// ListResult is one list's page latency: from sending the request to
// having read the whole response body.
type ListResult struct {
	Name    string  `json:"name"`
	Latency Latency `json:"latency"`
	// CPU is the server process's CPU time per request (its garbage
	// collector and, while it starts jobs, its engine included; the
	// readers' too when it runs in this process), a figure that the other
	// programs on the machine change less than the latency.
	CPU time.Duration `json:"cpu_per_request_ns"`
	// EngineCPU, while the engine starts jobs, is the share of CPU that
	// is the engine's: the jobs it started during this list's reads
	// times EngineCPUPerJob, per request. CPU - EngineCPU is what the
	// reads themselves cost, to compare with an idle engine's CPU.
	EngineCPU time.Duration `json:"engine_cpu_per_request_ns,omitempty"`
	// DBCPU is the CPU time per request of the PostgreSQL backends that
	// serve the server's connections (0 on SQLite, or when PostgreSQL
	// runs on another host and its processes cannot be read): what a
	// list costs the database, which the server's CPU leaves out.
	DBCPU time.Duration `json:"db_cpu_per_request_ns,omitempty"`
}

// listCase is one list of the API: a path under api.Prefix and its query.
type listCase struct {
	name  string
	path  string
	query url.Values
	// The list's pages start after ids from first to last: a tenth of the
	// pages start at the first page, the others at a tenth, two tenths...
	// of the way from first to last. first == last == 0 is no list but
	// one object (no cursor, no page size).
	first, last int64
}

// urls returns the ten URLs of the list's pages that the readers read.
func (c listCase) urls(base string) []string {
	out := make([]string, 10)
	for k := range out {
		q := url.Values{}
		maps.Copy(q, c.query)
		if c.first != 0 || c.last != 0 {
			q.Set("limit", strconv.Itoa(listPageSize))
			if k > 0 {
				// The API passes the store's cursor through as its next.
				q.Set("after", store.IDCursor(c.first+(c.last-c.first)*int64(k)/10))
			}
		}
		out[k] = base + api.Prefix + c.path
		if len(q) > 0 {
			out[k] += "?" + q.Encode()
		}
	}
	return out
}

// keptSchemaFile, in a kept data folder, names the PostgreSQL schema that
// the run kept.
const keptSchemaFile = "schema"

// listPageSize is the page size the readers ask for.
const listPageSize = 100

// RunLists seeds the rows in the store, starts a server on them and
// measures every list through its API.
func RunLists(ctx context.Context, cfg ListsConfig) (rep *ListsReport, err error) {
	if cfg.Rows <= 0 || cfg.Readers < 0 || cfg.Requests < 0 {
		return nil, errors.New("bench: lists needs at least one row, and readers and requests not below zero")
	}
	cfg.Readers, cfg.Requests = cmp.Or(cfg.Readers, 8), cmp.Or(cfg.Requests, 50)
	jc := &JobsConfig{DBURL: cfg.DBURL, KeepSchema: cfg.KeepSchema, DataDir: cfg.DataDir, Reuse: cfg.Reuse}
	if cfg.Reuse && isPostgres(cfg.DBURL) {
		schema, err := os.ReadFile(filepath.Join(cfg.DataDir, keptSchemaFile))
		if err != nil {
			return nil, fmt.Errorf("bench: the kept schema's name: %w", err)
		}
		if jc.DBURL, err = withSearchPath(cfg.DBURL, strings.TrimSpace(string(schema))); err != nil {
			return nil, err
		}
	}
	st, closeStore, err := openJobsStore(ctx, jc)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, closeStore()) }()
	if cfg.KeepSchema && !cfg.Reuse && isPostgres(jc.DBURL) {
		// The server's signing key is in DataDir too: --reuse needs both.
		// --keep takes a new folder as well as an empty one.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(cfg.DataDir, keptSchemaFile), []byte(searchPath(jc.DBURL)+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	var backends *pgBackends
	if isPostgres(jc.DBURL) {
		if backends, err = newPGBackends(jc.DBURL); err != nil {
			return nil, err
		}
		defer func() { err = errors.Join(err, backends.Close()) }()
		// The server's connections name themselves, so that their
		// backends' CPU time can be told from the seeding's and the
		// benchmark's own.
		if jc.DBURL, err = withAppName(jc.DBURL, backends.app); err != nil {
			return nil, err
		}
	}
	seedOrRecover := seedLists
	if cfg.Reuse {
		seedOrRecover = func(ctx context.Context, st store.Store, cfg ListsConfig) (listsSeed, error) {
			return recoverSeed(ctx, st, cfg.Rows)
		}
	}
	seed, err := seedOrRecover(ctx, st, cfg)
	if err != nil {
		return nil, err
	}
	srv, err := startListsServer(ctx, st, seed, cfg, jc)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()
	rep = &ListsReport{Rows: cfg.Rows, Database: dbKind(cfg.DBURL), Readers: cfg.Readers,
		SeparateServer: srv.Separate, WhileStarting: cfg.WhileStarting}
	// One kept-alive connection per reader, as a console's or a script's
	// client holds: no request pays for a connection.
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Readers, MaxConnsPerHost: cfg.Readers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	r := &listReader{srv: srv, hc: &http.Client{Transport: tr}, cases: listCases(seed), cfg: cfg, db: backends}
	if err := r.check(ctx); err != nil {
		return nil, err
	}
	read := func() error { return r.measure(ctx, rep) }
	if !cfg.WhileStarting {
		return rep, read()
	}
	return rep, r.whileStarting(ctx, seed, rep, read)
}

// startListsServer starts a server on the seeded database, marks every
// other device online again (a server marks every device offline when it
// starts: its broker has no connection yet) and, on PostgreSQL, vacuums.
func startListsServer(ctx context.Context, st store.Store, seed listsSeed, cfg ListsConfig, jc *JobsConfig) (*Server, error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	if cfg.Reuse {
		// The kept database has the first run's admin token, whose secret
		// is gone: the server ignores the new one it is given, so the
		// store gets it.
		t := ota.Token{Name: "bench-" + token[len(token)-8:], Role: ota.RoleAdmin}
		if err := st.CreateToken(ota.WithActor(ctx, "bench"), &t, credential.Hash(token)); err != nil {
			return nil, fmt.Errorf("create the readers' token: %w", err)
		}
	}
	start := startInProcess
	if cfg.Executable != "" {
		start = startSubprocess
	}
	say(cfg.Progress, "starting the server (separate process: %t)", cfg.Executable != "")
	// Not StartServer: it would give PostgreSQL a fresh, empty schema.
	opts := ServerOptions{Executable: cfg.Executable, DataDir: jc.DataDir, DBURL: jc.DBURL, MQTTAddr: "127.0.0.1:0",
		CPUProfile: cfg.CPUProfile, Stderr: cfg.Progress}
	srv, err := start(ctx, opts, token)
	if err != nil {
		return nil, err
	}
	if err := markEvenOnline(ctx, st, seed, cfg.Progress); err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	if !isPostgres(jc.DBURL) {
		return srv, nil
	}
	// Seeding and the server's start updated every device and one job in
	// ten: until the autovacuum passes, the indexes hold the rows' old
	// versions, which a scan visits, and the planner has no statistics.
	say(cfg.Progress, "vacuuming and analysing the tables")
	pg, err := pgx.ParseConfig(jc.DBURL)
	if err == nil {
		err = execPostgres(ctx, pg, "VACUUM ANALYZE devices, device_versions, device_tags, jobs, task_counts, events")
	}
	if err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	return srv, nil
}

// markEvenOnline records every other device (the even ones from the
// first) as connected, so that "online" filters half of them and the
// engine can start their jobs.
func markEvenOnline(ctx context.Context, st store.Store, seed listsSeed, progress io.Writer) error {
	ids := make([]int64, 0, (seed.lastDevice-seed.firstDevice)/2+1)
	for id := seed.firstDevice; id <= seed.lastDevice; id += 2 {
		ids = append(ids, id)
	}
	say(progress, "marking %d devices online", len(ids))
	return markOnline(ctx, st, ids)
}

// listReader reads the lists of a server over HTTP.
type listReader struct {
	srv   *Server
	hc    *http.Client
	cases []listCase
	cfg   ListsConfig
	db    *pgBackends // nil on SQLite
}

// get reads u to the end of its body and fails unless it answered 200.
func (r *listReader) get(ctx context.Context, u string, body io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.srv.Token)
	req.Header.Set("Accept", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, msg)
	}
	if _, err := io.Copy(body, resp.Body); err != nil {
		return fmt.Errorf("GET %s: read the body: %w", u, err)
	}
	return nil
}

// check reads once, untimed, each page the readers will read and fails on
// an empty one: a cursor the API did not take as its own, or a seed that
// left a list empty, would measure nothing. It then opens the readers'
// connections and warms the server's.
func (r *listReader) check(ctx context.Context) error {
	say(r.cfg.Progress, "checking every page the readers read")
	for _, c := range r.cases {
		for k, u := range c.urls(r.srv.HTTPURL) {
			var b bytes.Buffer
			if err := r.get(ctx, u, &b); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if c.first == 0 && c.last == 0 {
				continue
			}
			var page struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(b.Bytes(), &page); err != nil {
				return fmt.Errorf("%s: page %d: %w", c.name, k, err)
			}
			// Below 10,000 rows the last tenths of the task hold no failed
			// job (one in a thousand): only the first page must be full.
			if len(page.Items) == 0 && (k == 0 || r.cfg.Rows >= 10000) {
				return fmt.Errorf("%s: page %d (%s) is empty", c.name, k, u)
			}
		}
	}
	// The readers then read every page once more, untimed unless Cold,
	// list by list, all of them on the same list at once, as they will
	// when timed: as a server that has been serving has, each pool of
	// database connections then holds as many connections as requests
	// at once, each with the statements of its lists prepared and the
	// catalogs it plans them with cached. Without this, the first uses
	// of each list on each connection (about as many requests as
	// readers, of 400 a list) are its p99: a new PostgreSQL backend
	// planned a list's first statement in 7 to 126 ms in EXPLAIN at
	// 1,000,000 rows, the same statement later in 0.1 to 0.7 ms. Lists
	// that only some of the server's connections serve (a pool of their
	// own) would otherwise open connections while timed, if the readers
	// passed them at different moments.
	if r.cfg.Cold {
		return r.get(ctx, r.cases[0].urls(r.srv.HTTPURL)[0], io.Discard)
	}
	for _, c := range r.cases {
		urls := c.urls(r.srv.HTTPURL)
		errs := make([]error, r.cfg.Readers)
		var wg sync.WaitGroup
		for g := range r.cfg.Readers {
			wg.Go(func() {
				for _, u := range urls {
					if errs[g] = r.get(ctx, u, io.Discard); errs[g] != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

func (r *listReader) measure(ctx context.Context, rep *ListsReport) error {
	for _, c := range r.cases {
		say(r.cfg.Progress, "reading %s", c.name)
		var n0, n1 float64
		var err error
		if rep.EngineCPUPerJob > 0 {
			if n0, err = r.started(ctx); err != nil {
				return err
			}
		}
		res, err := r.measureList(ctx, c)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		if rep.EngineCPUPerJob > 0 {
			if n1, err = r.started(ctx); err != nil {
				return err
			}
			requests := float64(r.cfg.Readers * r.cfg.Requests)
			res.EngineCPU = time.Duration(float64(rep.EngineCPUPerJob) * (n1 - n0) / requests)
		}
		rep.Lists = append(rep.Lists, res)
	}
	return nil
}

// started is the number of jobs the server's engine has started.
func (r *listReader) started(ctx context.Context) (float64, error) {
	m, err := Scrape(ctx, r.hc, r.srv.HTTPURL)
	return m["otter_engine_jobs_started_total"], err
}

// engineAlone measures the server's CPU time per job started while the
// engine starts jobs and nobody reads: for up to a second, or until it
// started a tenth of the startable jobs, so that enough are left for the
// reads. Zero if it started none meanwhile.
func (r *listReader) engineAlone(ctx context.Context, startable int64) (time.Duration, error) {
	u0, err := r.srv.Usage()
	if err != nil {
		return 0, err
	}
	n0, err := r.started(ctx)
	if err != nil {
		return 0, err
	}
	n1, end := n0, time.Now().Add(time.Second)
	for time.Now().Before(end) && n1-n0 < float64(startable)/10 {
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return 0, err
		}
		if n1, err = r.started(ctx); err != nil {
			return 0, err
		}
	}
	u1, err := r.srv.Usage()
	if err != nil || n1 <= n0 {
		return 0, err
	}
	return time.Duration(float64(u1.CPU-u0.CPU) / (n1 - n0)), nil
}

// measureList runs Readers goroutines reading Requests pages each over
// HTTP; page i starts after a cursor spread over the ids, the first page
// included. A request is timed from its sending until its body is read.
func (r *listReader) measureList(ctx context.Context, c listCase) (ListResult, error) {
	urls := c.urls(r.srv.HTTPURL)
	times := make([][]time.Duration, r.cfg.Readers)
	errs := make([]error, r.cfg.Readers)
	u0, err := r.srv.Usage()
	if err != nil {
		return ListResult{}, err
	}
	db0, err := r.db.cpu(ctx)
	if err != nil {
		return ListResult{}, err
	}
	var wg sync.WaitGroup
	for g := range r.cfg.Readers {
		wg.Go(func() {
			times[g] = make([]time.Duration, 0, r.cfg.Requests)
			for i := range r.cfg.Requests {
				t0 := time.Now()
				if err := r.get(ctx, urls[(g*r.cfg.Requests+i)%len(urls)], io.Discard); err != nil {
					errs[g] = err
					return
				}
				times[g] = append(times[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return ListResult{}, err
	}
	u1, err := r.srv.Usage()
	if err != nil {
		return ListResult{}, err
	}
	db1, err := r.db.cpu(ctx)
	if err != nil {
		return ListResult{}, err
	}
	all := slices.Concat(times...)
	slices.Sort(all)
	n := time.Duration(len(all))
	return ListResult{Name: c.name, Latency: latency(all), CPU: (u1.CPU - u0.CPU) / n, DBCPU: db1.since(db0) / n}, nil
}

// whileStarting resumes the seeded task through the API, so that the
// server's engine starts its jobs, and calls read once the engine is
// starting them; it fails if the engine ran out of jobs to start before
// read returned, since the last reads would then have measured an idle
// engine.
func (r *listReader) whileStarting(ctx context.Context, seed listsSeed, rep *ListsReport, read func() error) error {
	say(r.cfg.Progress, "resuming the task: the engine starts %d startable jobs", seed.startable)
	api := client.New(r.srv.HTTPURL, r.srv.Token, client.WithHTTPClient(r.hc), client.WithUserAgent("otter-bench"))
	if _, err := api.ResumeTask(ctx, seed.task.ID); err != nil {
		return fmt.Errorf("resume the task: %w", err)
	}
	for {
		n, err := r.started(ctx)
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
	perJob, err := r.engineAlone(ctx, seed.startable)
	if err != nil {
		return err
	}
	rep.EngineCPUPerJob = perJob
	m0, err := Scrape(ctx, r.hc, r.srv.HTTPURL)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := read(); err != nil {
		return err
	}
	m1, err := Scrape(ctx, r.hc, r.srv.HTTPURL)
	if err != nil {
		return err
	}
	const startedName, yieldName = "otter_engine_jobs_started_total", "otter_engine_read_yield_seconds_total"
	n1 := m1[startedName]
	rep.ReadSeconds = time.Since(t0).Seconds()
	rep.JobsStarted = int64(n1 - m0[startedName])
	rep.JobsPerSecond = float64(rep.JobsStarted) / rep.ReadSeconds
	rep.EngineYield = m1[yieldName] - m0[yieldName]
	say(r.cfg.Progress, "the engine started %d jobs while the readers read (%.0f a second; it waited %.1f s of the %.1f s for reads in flight)",
		rep.JobsStarted, rep.JobsPerSecond, rep.EngineYield, rep.ReadSeconds)
	if int64(n1) >= seed.startable {
		return fmt.Errorf("the engine started all %d startable jobs before the readers were done: use more rows", seed.startable)
	}
	return nil
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

// seedLists creates N devices, a paused task with N jobs (one in ten
// succeeded, one in a thousand failed, the rest queued) and N events of
// that task's jobs. The task is paused so that the server's engine starts
// no job until --while-starting resumes it.
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
		Mode: ota.ModePush, State: ota.TaskPaused, Total: int64(cfg.Rows)}
	if err := st.CreateTask(ctx, &task, jobs); err != nil {
		return seed, fmt.Errorf("create the task: %w", err)
	}
	seed.task = task
	if err := finishSeededJobs(ctx, st, task.ID, cfg.Progress); err != nil {
		return seed, err
	}
	if err := seedEvents(ctx, st, task, jobs, cfg.Progress); err != nil {
		return seed, err
	}
	return seedBounds(ctx, st, seed, devs[0].ID, cfg.Rows)
}

// recoverSeed finds what seedLists made of rows in a kept database, for
// --reuse: the newest task, still paused (a run --while-starting resumed
// it and started its jobs: such a database is not reused).
func recoverSeed(ctx context.Context, st store.Store, rows int) (listsSeed, error) {
	var seed listsSeed
	devs, _, err := st.ListDevices(ctx, store.DeviceFilter{Product: benchProduct}, store.Page{Limit: 1})
	if err != nil || len(devs) == 0 {
		return seed, errors.Join(err, errors.New("bench: no device to reuse"))
	}
	tasks, _, err := st.ListTasks(ctx, store.TaskFilter{}, store.Page{Limit: 1})
	if err != nil || len(tasks) == 0 {
		return seed, errors.Join(err, errors.New("bench: no task to reuse"))
	}
	if seed.task = tasks[0]; seed.task.State != ota.TaskPaused || seed.task.Total != int64(rows) {
		return seed, fmt.Errorf("bench: the kept task is %s with %d jobs: reuse needs the paused task of --rows %d", seed.task.State, seed.task.Total, rows)
	}
	for i := range rows {
		if i%2 == 0 && seededState(i) == ota.JobQueued {
			seed.startable++
		}
	}
	return seedBounds(ctx, st, seed, devs[0].ID, rows)
}

// seedBounds sets the first and last ids of the seeded rows.
func seedBounds(ctx context.Context, st store.Store, seed listsSeed, firstDevice int64, rows int) (listsSeed, error) {
	task := seed.task
	seed.firstDevice, seed.lastDevice = firstDevice, firstDevice+int64(rows)-1
	first, _, err := st.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, store.Page{Limit: 1})
	if err != nil || len(first) == 0 {
		return seed, errors.Join(err, errors.New("bench: no job"))
	}
	seed.firstJob, seed.lastJob = first[0].ID, first[0].ID+int64(rows)-1
	newest, _, err := st.ListEvents(ctx, store.EventFilter{}, store.Page{Limit: 1})
	if err != nil || len(newest) == 0 {
		return seed, errors.Join(err, errors.New("bench: no event"))
	}
	seed.firstEvent, seed.lastEvent = newest[0].ID-int64(rows)+1, newest[0].ID
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
	taskPath := "/tasks/" + strconv.FormatInt(task.ID, 10)
	jobs := func(name string, states ...ota.JobState) listCase {
		q := url.Values{}
		for _, s := range states {
			q.Add("state", string(s))
		}
		return listCase{name, taskPath + "/jobs", q, seed.firstJob, seed.lastJob}
	}
	devices := func(name string, q url.Values) listCase {
		return listCase{name, "/devices", q, seed.firstDevice, seed.lastDevice}
	}
	// Events are listed newest first: their pages start after ids that
	// run down from the newest.
	events := func(name string, q url.Values) listCase {
		return listCase{name, "/events", q, seed.lastEvent, seed.firstEvent}
	}
	return []listCase{
		{"task status", taskPath, nil, 0, 0},
		jobs("task jobs"),
		jobs("task jobs, state queued", ota.JobQueued),
		jobs("task jobs, state failed (0.1%)", ota.JobFailed),
		jobs("task jobs, states succeeded+failed", ota.JobSucceeded, ota.JobFailed),
		devices("devices of the product", url.Values{"product": {benchProduct}}),
		devices("devices online (50%)", url.Values{"product": {benchProduct}, "online": {"true"}}),
		events("events", nil),
		events("events of the task", url.Values{"task": {strconv.FormatInt(task.ID, 10)}}),
		events("events of kind job", url.Values{"kind": {string(ota.KindJob)}}),
		events("events of a device", url.Values{"product": {benchProduct}, "device": {"d0000001"}}),
	}
}
