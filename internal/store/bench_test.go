package store_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// benchmark runs bench on a fresh store of every backend.
func benchmark(b *testing.B, bench func(b *testing.B, s store.Store)) {
	for _, backend := range storetest.Backends() {
		b.Run(backend.Name, func(b *testing.B) {
			bench(b, storetest.OpenURL(b, backend.URL(b)))
		})
	}
}

// BenchmarkCreateDevices creates 10,000 tagged devices in one call.
func BenchmarkCreateDevices(b *testing.B) {
	benchmark(b, func(b *testing.B, s store.Store) {
		createProduct(b, s, "p")
		run := 0
		for b.Loop() {
			devs := newDevices("p", fmt.Sprint("run", run), 10000)
			for i := range devs {
				devs[i].Tags = map[string]string{"site": fmt.Sprint(i % 10), "ring": fmt.Sprint(i % 3)}
			}
			run++
			if _, err := s.CreateDevices(context.Background(), devs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*10000), "µs/device")
	})
}

// BenchmarkListDevicesByTag lists a page of 100 devices that match two tags
// among 20,000, 1 in 30 of which match.
func BenchmarkListDevicesByTag(b *testing.B) {
	benchmark(b, func(b *testing.B, s store.Store) {
		createProduct(b, s, "p")
		for batch := range 2 {
			devs := newDevices("p", fmt.Sprint("b", batch), 10000)
			for i := range devs {
				devs[i].Tags = map[string]string{"site": fmt.Sprint(i % 10), "ring": fmt.Sprint(i % 3)}
			}
			createDevices(b, s, devs)
		}
		f := store.DeviceFilter{Product: "p", Tags: map[string]string{"site": "7", "ring": "2"}}
		for b.Loop() {
			devs, _, err := s.ListDevices(context.Background(), f, store.Page{Limit: 100})
			if err != nil || len(devs) != 100 {
				b.Fatalf("%d devices, %v", len(devs), err)
			}
		}
	})
}

// BenchmarkListPages reads one page of 100 of every list the API serves,
// from the middle of the list, and reports the process's CPU time per page
// (cpu-µs/op) besides the wall time, which other programs on the machine
// change more. It seeds 20,000 devices, jobs of one task (one in ten
// succeeded, one in a thousand failed) and events; with
// OTTER_BENCH_LISTS_URL it reads the database `otter bench lists` seeded
// instead (--rows 1000000, kept with its data folder or schema).
//
// Each list is read twice: "warm" reads the same page again and again, as
// an idle server does; "after-write" has another connection pool commit a
// one-row write (a replica's heartbeat, which every server writes every
// two seconds) before each read, untimed, as a server with devices or an
// engine at work does. On SQLite in WAL mode a reader empties its page
// cache whenever another connection committed, so "after-write" is what a
// list costs on a server that is not idle.
func BenchmarkListPages(b *testing.B) {
	if u := os.Getenv("OTTER_BENCH_LISTS_URL"); u != "" {
		s := storetest.OpenURL(b, withAppName(b, u, listPagesApp))
		task, err := s.GetTask(context.Background(), 1)
		if err != nil {
			b.Fatal(err)
		}
		benchListPages(b, s, storetest.OpenURL(b, u), task)
		return
	}
	for _, backend := range storetest.Backends() {
		b.Run(backend.Name, func(b *testing.B) {
			u := backend.URL(b)
			s := storetest.OpenURL(b, withAppName(b, u, listPagesApp))
			benchListPages(b, s, storetest.OpenURL(b, u), seedListPages(b, s, 20000))
		})
	}
}

func seedListPages(b *testing.B, s store.Store, n int) ota.Task {
	ctx := as("op")
	createProduct(b, s, "bench")
	devs := createDevices(b, s, newDevices("bench", "d", n))
	fw := ota.Firmware{Product: "bench", Module: "default", Version: "2.0.0", Size: 1, SHA256: fmt.Sprintf("%064d", 1), Signature: "x", BlobKey: "k"}
	must(b, s.CreateFirmware(ctx, &fw))
	task := ota.Task{Product: "bench", Module: "default", FirmwareID: fw.ID, Version: "2.0.0", Mode: ota.ModePush,
		State: ota.TaskRunning, Total: int64(n)}
	jobs := make([]ota.Job, n)
	for i, d := range devs {
		jobs[i] = ota.Job{DeviceID: d.ID, Device: d.Key, Product: "bench", Module: "default", State: ota.JobQueued, Version: "2.0.0"}
	}
	must(b, s.CreateTask(ctx, &task, jobs))
	all, _, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, store.Page{Limit: store.MaxPageSize})
	must(b, err)
	for page := (store.Page{Limit: store.MaxPageSize}); ; {
		jobs, next, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, page)
		must(b, err)
		var c ota.ChangeSet
		for _, j := range jobs {
			n := j
			switch i := j.ID - all[0].ID; {
			case i%1000 == 7:
				n.State = ota.JobFailed
			case i%10 == 3:
				n.State = ota.JobSucceeded
			default:
				continue
			}
			n.UpdatedAt = time.Now().UTC()
			c.Jobs = append(c.Jobs, ota.JobUpdate{Old: j, New: n})
		}
		for i, j := range jobs {
			c.Events = append(c.Events, ota.Event{At: time.Now(), Kind: ota.KindJob, Action: "queued", Product: "bench",
				Device: j.Device, TaskID: task.ID, JobID: j.ID})
			if i%2 == 0 {
				c.Presence = append(c.Presence, ota.Presence{DeviceID: j.DeviceID, Online: true, At: time.Now()})
			}
		}
		_, err = s.Apply(as("engine"), c)
		must(b, err)
		if next == "" {
			return task
		}
		page.After = next
	}
}

// benchListPages reads the lists of task from s; writer, a store of its
// own on the same database, writes before each "after-write" read.
func benchListPages(b *testing.B, s, writer store.Store, task ota.Task) {
	ctx := context.Background()
	write := func() {
		if _, err := writer.Heartbeat(ctx, store.Replica{ID: "bench-writer", URL: "http://127.0.0.1:1",
			Version: "bench", StartedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	online := true
	jobsMid, eventsMid, devicesMid := middle(b, s, task)
	cases := []struct {
		name string
		read func() (int, error)
	}{
		{"task", func() (int, error) { _, err := s.GetTask(ctx, task.ID); return 1, err }},
		{"jobs", jobsPage(ctx, s, task.ID, jobsMid)},
		{"jobs-queued", jobsPage(ctx, s, task.ID, jobsMid, ota.JobQueued)},
		{"jobs-failed", jobsPage(ctx, s, task.ID, jobsMid, ota.JobFailed)},
		{"jobs-succeeded+failed", jobsPage(ctx, s, task.ID, jobsMid, ota.JobSucceeded, ota.JobFailed)},
		{"devices", func() (int, error) {
			d, _, err := s.ListDevices(ctx, store.DeviceFilter{Product: "bench"}, store.Page{Limit: 100, After: devicesMid})
			return len(d), err
		}},
		{"devices-online", func() (int, error) {
			d, _, err := s.ListDevices(ctx, store.DeviceFilter{Product: "bench", Online: &online}, store.Page{Limit: 100, After: devicesMid})
			return len(d), err
		}},
		{"events", eventsPage(ctx, s, store.EventFilter{}, eventsMid)},
		{"events-task", eventsPage(ctx, s, store.EventFilter{TaskID: task.ID}, eventsMid)},
		{"events-kind", eventsPage(ctx, s, store.EventFilter{Kind: ota.KindJob}, eventsMid)},
		{"events-device", eventsPage(ctx, s, store.EventFilter{Product: "bench", Device: "d-00007"}, "")},
	}
	for _, c := range cases {
		for _, afterWrite := range []bool{false, true} {
			name := c.name + "/warm"
			if afterWrite {
				name = c.name + "/after-write"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				var cpu time.Duration
				rows := 0
				db0 := backendCPU(b, s)
				for b.Loop() {
					if afterWrite {
						b.StopTimer()
						write()
						b.StartTimer()
					}
					cpu0 := processCPU()
					n, err := c.read()
					cpu += processCPU() - cpu0
					if err != nil {
						b.Fatal(err)
					}
					rows = n
				}
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
				if db0 >= 0 {
					b.ReportMetric(float64((backendCPU(b, s)-db0).Microseconds())/float64(b.N), "db-cpu-µs/op")
				}
				b.ReportMetric(float64(rows), "rows")
			})
		}
	}
}

// middle returns the cursors of the pages in the middle of the task's
// jobs, of the events (newest first) and of the devices.
func middle(b *testing.B, s store.Store, task ota.Task) (jobs, events, devices string) {
	ctx := context.Background()
	half := task.Total / 2
	j, _, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, store.Page{Limit: 1})
	must(b, err)
	e, _, err := s.ListEvents(ctx, store.EventFilter{}, store.Page{Limit: 1})
	must(b, err)
	d, _, err := s.ListDevices(ctx, store.DeviceFilter{Product: task.Product}, store.Page{Limit: 1})
	must(b, err)
	if len(j) == 0 || len(e) == 0 || len(d) == 0 {
		b.Fatal("nothing to list")
	}
	return store.IDCursor(j[0].ID + half), store.IDCursor(e[0].ID - half), store.IDCursor(d[0].ID + half)
}

func jobsPage(ctx context.Context, s store.Store, taskID int64, after string, states ...ota.JobState) func() (int, error) {
	return func() (int, error) {
		jobs, _, err := s.ListJobs(ctx, store.JobFilter{TaskID: taskID, States: states}, store.Page{Limit: 100, After: after})
		return len(jobs), err
	}
}

func eventsPage(ctx context.Context, s store.Store, f store.EventFilter, after string) func() (int, error) {
	return func() (int, error) {
		events, _, err := s.ListEvents(ctx, f, store.Page{Limit: 100, After: after})
		return len(events), err
	}
}

// listPagesApp is the application name of the connections of the store
// whose reads BenchmarkListPages measures, so that backendCPU finds their
// PostgreSQL backends (and not the writer's).
const listPagesApp = "otter-list-pages"

// withAppName names the connections of a PostgreSQL URL app; other URLs
// are returned as they are.
func withAppName(tb testing.TB, rawURL, app string) string {
	if !strings.HasPrefix(rawURL, "postgres") {
		return rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String()
}

// backendCPU is the CPU time used so far by the PostgreSQL backends of
// the connections named listPagesApp, read from /proc (the database on
// this host; 10 ms ticks, so only a long loop's sum means anything); -1
// on SQLite or when they cannot be read.
func backendCPU(tb testing.TB, s store.Store) time.Duration {
	pids, err := store.BackendPIDs(context.Background(), s, listPagesApp)
	if err != nil || len(pids) == 0 {
		return -1
	}
	var sum time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		for _, v := range f[11:13] { // utime, stime in USER_HZ (100)
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			sum += time.Duration(n) * 10 * time.Millisecond
		}
	}
	return sum
}

// processCPU is the user and system CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEndJobs ends 500 jobs a commit, as the engine's batches do
// (queued jobs of a task of 500 x b.N moved to succeeded, one in ten to
// failed, with their events), and reports the process's CPU time per job
// (cpu-ns/job): what the index of failed jobs adds to the engine's writes.
func BenchmarkEndJobs(b *testing.B) {
	benchmark(b, func(b *testing.B, s store.Store) {
		const chunk = 500
		ctx := as("engine")
		createProduct(b, s, "bench")
		devs := createDevices(b, s, newDevices("bench", "d", chunk*b.N))
		fw := ota.Firmware{Product: "bench", Module: "default", Version: "2.0.0", Size: 1, SHA256: fmt.Sprintf("%064d", 1), Signature: "x", BlobKey: "k"}
		must(b, s.CreateFirmware(ctx, &fw))
		task := createPushTask(ctx, b, s, fw, devs)
		var all []ota.Job
		for page := (store.Page{Limit: store.MaxPageSize}); ; {
			got, next, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, page)
			must(b, err)
			all = append(all, got...)
			if next == "" {
				break
			}
			page.After = next
		}
		var cpu time.Duration
		b.ResetTimer()
		for i := range b.N {
			var c ota.ChangeSet
			now := time.Now().UTC()
			for k, j := range all[i*chunk : (i+1)*chunk] {
				n := j
				n.State, n.Percent, n.UpdatedAt = ota.JobSucceeded, 100, now
				if k%10 == 0 {
					n.State, n.Percent, n.Code, n.Message = ota.JobFailed, 0, "install_failed", "the install failed"
				}
				c.Jobs = append(c.Jobs, ota.JobUpdate{Old: j, New: n})
				c.Events = append(c.Events, ota.Event{At: now, Kind: ota.KindJob, Action: string(n.State), Product: "bench",
					Device: j.Device, TaskID: task.ID, JobID: j.ID})
			}
			cpu0 := processCPU()
			_, err := s.Apply(ctx, c)
			cpu += processCPU() - cpu0
			must(b, err)
		}
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*chunk), "cpu-ns/job")
	})
}

// BenchmarkCancelQueued cancels a task's queued jobs in one call, as
// cancelling a task does (OTTER_BENCH_CANCEL_JOBS of them, 20,000 unless
// set; b.N tasks, one cancelled an iteration), and reports the CPU time
// per job cancelled: the process's (cpu-ns/job; SQLite's work is in the
// process) and on PostgreSQL the backend's (db-cpu-ns/job, 10 ms ticks:
// use a large task). It is what keeping active_jobs costs a bulk cancel.
func BenchmarkCancelQueued(b *testing.B) {
	n := 20000
	if v := os.Getenv("OTTER_BENCH_CANCEL_JOBS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for _, backend := range storetest.Backends() {
		b.Run(backend.Name, func(b *testing.B) {
			s := storetest.OpenURL(b, withAppName(b, backend.URL(b), listPagesApp))
			ctx := as("op")
			createProduct(b, s, "bench")
			devs := createDevices(b, s, newDevices("bench", "d", n))
			fw := ota.Firmware{Product: "bench", Module: "default", Version: "2.0.0", Size: 1, SHA256: fmt.Sprintf("%064d", 1), Signature: "x", BlobKey: "k"}
			must(b, s.CreateFirmware(ctx, &fw))
			var cpu, dbCPU time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				task := createPushTask(ctx, b, s, fw, devs)
				b.StartTimer()
				cpu0, db0 := processCPU(), backendCPU(b, s)
				cancelled, err := s.CancelQueued(ctx, ota.CancelRequest{TaskID: task.ID, Code: ota.CodeTaskCancelled, Actor: "op", At: time.Now()})
				cpu += processCPU() - cpu0
				if db0 >= 0 {
					dbCPU += backendCPU(b, s) - db0
				}
				must(b, err)
				var got int64
				for _, byState := range cancelled {
					for _, k := range byState {
						got += k
					}
				}
				if got != int64(n) {
					b.Fatalf("%d jobs cancelled, want %d", got, n)
				}
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/job")
			if dbCPU > 0 {
				b.ReportMetric(float64(dbCPU.Nanoseconds())/float64(b.N*n), "db-cpu-ns/job")
			}
		})
	}
}

// createPushTask creates a running push task of fw with a queued job for
// each of devs.
func createPushTask(ctx context.Context, b *testing.B, s store.Store, fw ota.Firmware, devs []ota.Device) ota.Task {
	b.Helper()
	task := ota.Task{Product: fw.Product, Module: fw.Module, FirmwareID: fw.ID, Version: fw.Version, Mode: ota.ModePush,
		State: ota.TaskRunning, Total: int64(len(devs))}
	jobs := make([]ota.Job, len(devs))
	for i, d := range devs {
		jobs[i] = ota.Job{DeviceID: d.ID, Device: d.Key, Product: fw.Product, Module: fw.Module, State: ota.JobQueued, Version: fw.Version}
	}
	must(b, s.CreateTask(ctx, &task, jobs))
	return task
}
