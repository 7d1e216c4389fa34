package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otter-ota/otter/internal/bench"
	"github.com/otter-ota/otter/internal/cli"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// TestMain lets this test binary play `otter bench server` and `otter
// bench devices`, so that the tests run the server and the devices in
// processes of their own as the CLI does.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "bench" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := cli.Execute(ctx, os.Args[1:], cli.OSEnv())
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func checkFleet(t *testing.T, rep *bench.FleetReport, devices int) {
	t.Helper()
	if rep.Err() != nil || rep.Failed != 0 || rep.Upgrade.Count != devices || rep.Success.Count != devices {
		t.Fatalf("report %+v: want %d devices upgraded, each seen receiving its command and succeeding", rep, devices)
	}
	// Each device sends at least its progress and its new version, and
	// receives its upgrade command.
	if rep.Uplinks < 2*int64(devices) || rep.Downlinks < int64(devices) {
		t.Errorf("MQTT messages: %d up, %d down for %d devices", rep.Uplinks, rep.Downlinks, devices)
	}
	if rep.TaskTime <= 0 || rep.Upgrade.P50 > rep.Upgrade.P99 || rep.Upgrade.P99 > rep.TaskTime || rep.Success.Max > rep.TaskTime {
		t.Errorf("times out of order: task %s, upgrade %+v, success %+v", rep.TaskTime, rep.Upgrade, rep.Success)
	}
	if rep.ServerPeakRSS < rep.ServerRSS || rep.ServerRSS <= 0 || rep.ServerCPU <= 0 || rep.Commits <= 0 {
		t.Errorf("server use: peak %d, RSS %d, CPU %s, commits %d", rep.ServerPeakRSS, rep.ServerRSS, rep.ServerCPU, rep.Commits)
	}
}

func TestFleetInProcess(t *testing.T) {
	rep, err := bench.RunFleet(testContext(t), bench.FleetConfig{
		Devices: 5, FileSize: 4096, Server: bench.ServerOptions{DBURL: os.Getenv(storetest.PostgresEnv)},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFleet(t, rep, 5)
	if rep.SeparateServer {
		t.Error("an in-process server reported as separate")
	}
}

func TestFleetSeparateServerWithProfile(t *testing.T) {
	dir := t.TempDir()
	profile := dir + "/cpu.pprof"
	rep, err := bench.RunFleet(testContext(t), bench.FleetConfig{
		Devices: 3, FileSize: 1000,
		Server: bench.ServerOptions{Executable: os.Args[0], DataDir: dir + "/data", CPUProfile: profile, DownloadHTTP: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFleet(t, rep, 3)
	if !rep.SeparateServer {
		t.Error("a separate server reported as in-process")
	}
	if !rep.DownloadHTTP {
		t.Error("the downloads were not reported as served by the download listener")
	}
	// The profile until the task's creation, and the task's own.
	for _, p := range []string{profile, profile + ".task"} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("the server wrote no CPU profile %s: %v", p, err)
		}
	}
	if _, err := os.Stat(dir + "/data/otter.db"); err != nil {
		t.Errorf("the data folder given was not kept: %v", err)
	}
}

// TestFleetOfEnOSDevices runs the fleet benchmark with devices speaking
// EnOS's protocol in a devices process of their own, as the CLI does.
func TestFleetOfEnOSDevices(t *testing.T) {
	rep, err := bench.RunFleet(testContext(t), bench.FleetConfig{
		Devices: 6, FileSize: 3000, Protocol: sim.ProtocolEnOS,
		Server: bench.ServerOptions{Executable: os.Args[0], DBURL: os.Getenv(storetest.PostgresEnv)},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFleet(t, rep, 6)
	if rep.Protocol != sim.ProtocolEnOS {
		t.Errorf("report of protocol %q, want enos", rep.Protocol)
	}
}

func TestConnect(t *testing.T) {
	rep, err := bench.RunConnect(testContext(t), bench.ConnectConfig{
		Devices: 8, Server: bench.ServerOptions{Executable: os.Args[0]},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected != 8 || rep.RSS <= 0 || rep.PeakRSS < rep.RSS || rep.BaseRSS <= 0 || rep.ServerFDs < 8 || rep.Goroutines <= 0 {
		t.Errorf("report %+v: want 8 connections and the server's memory", rep)
	}
}

func TestJobs(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := ""
			if b.Name == "postgres" {
				db = os.Getenv(storetest.PostgresEnv)
			}
			rep, err := bench.RunJobs(testContext(t), bench.JobsConfig{Jobs: 2500, DBURL: db, BatchSize: 500, DataDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Jobs != 2500 || rep.JobsPerSecond <= 0 || rep.Commits < 5 || rep.Start <= 0 || rep.CreateTask <= 0 {
				t.Errorf("report %+v: want 2500 jobs started in at least 5 commits of 500", rep)
			}
		})
	}
}

// checkLists checks that every list was read n times and its latencies are
// in order.
func checkLists(t *testing.T, rep *bench.ListsReport, n int) {
	t.Helper()
	if len(rep.Lists) != 11 {
		t.Fatalf("report %+v: want 11 lists", rep)
	}
	for _, l := range rep.Lists {
		if l.Latency.Count != n || l.Latency.P50 <= 0 || l.Latency.P50 > l.Latency.P99 || l.Latency.P99 > l.Latency.Max || l.CPU < 0 {
			t.Errorf("%s: %+v, CPU %s: want %d requests timed in order", l.Name, l.Latency, l.CPU, n)
		}
		// The database's CPU is PostgreSQL's backends' alone.
		if l.DBCPU < 0 || rep.Database != "postgres" && l.DBCPU != 0 {
			t.Errorf("%s on %s: database CPU %s a request", l.Name, rep.Database, l.DBCPU)
		}
	}
}

func TestListsInProcess(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := ""
			if b.Name == "postgres" {
				db = os.Getenv(storetest.PostgresEnv)
			}
			rep, err := bench.RunLists(testContext(t), bench.ListsConfig{Rows: 3000, DBURL: db, DataDir: t.TempDir(), Readers: 2, Requests: 3})
			if err != nil {
				t.Fatal(err)
			}
			checkLists(t, rep, 2*3)
			if rep.SeparateServer || rep.WhileStarting || rep.JobsStarted != 0 {
				t.Errorf("report %+v: want an in-process server and no engine run", rep)
			}
		})
	}
}

// TestListsReuse reads the lists twice from one seeding: a run that keeps
// its database, then a run that reuses it (--keep, then --reuse).
func TestListsReuse(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			// A folder that does not exist yet, as --keep accepts.
			db, dir := "", filepath.Join(t.TempDir(), "kept")
			if b.Name == "postgres" {
				db = os.Getenv(storetest.PostgresEnv)
				t.Cleanup(func() { dropKeptSchema(t, db, dir) })
			}
			cfg := bench.ListsConfig{Rows: 2000, DBURL: db, DataDir: dir, KeepSchema: true, Readers: 2, Requests: 2}
			rep, err := bench.RunLists(testContext(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkLists(t, rep, 2*2)
			cfg.KeepSchema, cfg.Reuse = false, true
			if rep, err = bench.RunLists(testContext(t), cfg); err != nil {
				t.Fatal(err)
			}
			checkLists(t, rep, 2*2)
			if rep.Rows != 2000 {
				t.Errorf("reused %d rows, want 2000", rep.Rows)
			}
			// A reused database of another size is refused.
			cfg.Rows = 1000
			if _, err := bench.RunLists(testContext(t), cfg); err == nil {
				t.Error("reusing 2,000 rows as 1,000: no error")
			}
		})
	}
}

// dropKeptSchema drops the PostgreSQL schema that a kept run in dir named.
func dropKeptSchema(t *testing.T, db, dir string) {
	name, err := os.ReadFile(filepath.Join(dir, "schema"))
	if err != nil {
		t.Log(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{strings.TrimSpace(string(name))}.Sanitize()+" CASCADE"); err != nil {
		t.Error(err)
	}
}

// TestListsSeparateServerWhileStarting reads the lists from a server in a
// process of its own while its engine starts the task's 22,000 startable
// jobs, 1,000 a commit (100 while reads are in flight): 2 readers reading 20 pages of each list take
// several commits' time, under load as on an idle machine, so that the
// engine is seen starting jobs and does not run out of them. (At 20,000
// rows and 10 pages, CI once saw the reads end before the engine's second
// commit.)
func TestListsSeparateServerWhileStarting(t *testing.T) {
	rep, err := bench.RunLists(testContext(t), bench.ListsConfig{
		Rows: 50000, DBURL: os.Getenv(storetest.PostgresEnv), Executable: os.Args[0], Readers: 2, Requests: 20, WhileStarting: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkLists(t, rep, 2*20)
	t.Logf("the engine started %d jobs during the reads, %.0f a second", rep.JobsStarted, rep.JobsPerSecond)
	if !rep.SeparateServer || !rep.WhileStarting || rep.JobsStarted <= 0 || rep.JobsPerSecond <= 0 {
		t.Errorf("report %+v: want a separate server starting jobs during the reads", rep)
	}
	// The engine's CPU per job is measured alone before the reads; its
	// share of a list's CPU is an estimate, never negative.
	if rep.EngineCPUPerJob <= 0 {
		t.Errorf("engine CPU per job %v, want it measured", rep.EngineCPUPerJob)
	}
	for _, l := range rep.Lists {
		if l.EngineCPU < 0 {
			t.Errorf("%s: engine CPU %v a request", l.Name, l.EngineCPU)
		}
	}
	// The readers read back to back: the engine's job starts let them go
	// first, and the report says for how long.
	if rep.EngineYield <= 0 || rep.EngineYield > rep.ReadSeconds {
		t.Errorf("the engine waited %.3f s of %.3f s of reads for the reads in flight, want a part of them", rep.EngineYield, rep.ReadSeconds)
	}
}

// TestFleetCommand runs `otter bench fleet` through the CLI and reads its
// JSON report.
func TestFleetCommand(t *testing.T) {
	var out, errs bytes.Buffer
	code := cli.Execute(testContext(t), []string{"bench", "fleet", "--devices", "2", "--file-size", "2KiB", "--in-process", "-o", "json"},
		cli.Env{Stdout: &out, Stderr: &errs})
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var rep bench.FleetReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, out.String())
	}
	if rep.Devices != 2 || rep.Succeeded != 2 || rep.FileSize != 2048 {
		t.Errorf("report %+v: want 2 devices upgraded with a 2 KiB file", rep)
	}
}

func TestCommandsRefuseBadFlags(t *testing.T) {
	tests := [][]string{
		{"bench", "fleet", "--devices", "0"},
		{"bench", "fleet", "--file-size", "lots"},
		{"bench", "fleet", "--keep", "."}, // not empty
		{"bench", "connect", "--devices", "-1"},
		{"bench", "jobs", "--jobs", "0"},
		{"bench", "lists", "--rows", "0"},
		{"bench", "lists", "--readers", "0"},
		{"bench", "lists", "--requests", "-1"},
		{"bench", "server"},
	}
	for _, args := range tests {
		var out, errs bytes.Buffer
		if code := cli.Execute(testContext(t), args, cli.Env{Stdout: &out, Stderr: &errs}); code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (usage): %s", args, code, cli.ExitUsage, errs.String())
		}
	}
}
