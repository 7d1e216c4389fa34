package bench_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/bench"
	"github.com/otter-ota/otter/internal/cli"
	"github.com/otter-ota/otter/internal/mosquitto"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// clusterOptions are cluster-mode options on the test's PostgreSQL. As
// the cluster tests of internal/server, the test is skipped without
// PostgreSQL (.ci/run's SQLite pass); without Mosquitto it is skipped too,
// except under CI=true, where it fails.
func clusterOptions(t *testing.T, replicas int) bench.ServerOptions {
	t.Helper()
	db := os.Getenv(storetest.PostgresEnv)
	if db == "" {
		t.Skip("cluster mode needs PostgreSQL: set " + storetest.PostgresEnv)
	}
	_, _, _, err := mosquitto.Find()
	switch {
	case err != nil && os.Getenv("CI") == "true":
		t.Fatal(err)
	case errors.Is(err, mosquitto.ErrNotInstalled):
		t.Skip(err)
	case err != nil:
		t.Fatal(err)
	}
	return bench.ServerOptions{Executable: os.Args[0], DBURL: db, Broker: bench.BrokerMosquitto, Replicas: replicas}
}

// Two replicas on Mosquitto upgrade a small fleet, with the accounts
// seeded into Mosquitto's file or made by otter; the report has each
// replica's and the broker's use, one replica scheduling.
func TestFleetInClusterMode(t *testing.T) {
	for _, accounts := range []string{bench.AccountsSeed, bench.AccountsAPI} {
		t.Run(accounts, func(t *testing.T) {
			opts := clusterOptions(t, 2)
			opts.Accounts = accounts
			rep, err := bench.RunFleet(testContext(t), bench.FleetConfig{Devices: 5, FileSize: 4096, Server: opts})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Err() != nil || rep.Broker != bench.BrokerMosquitto || rep.Replicas != 2 || rep.Provision <= 0 || rep.Accounts != accounts {
				t.Fatalf("report %+v: want 5 devices upgraded through Mosquitto and 2 replicas, their creation timed, accounts %s", rep, accounts)
			}
			if seeded := rep.Seed > 0 && rep.Seed < rep.Provision; seeded != (accounts == bench.AccountsSeed) {
				t.Errorf("seeding took %s of %s; want a part of it only when seeded", rep.Seed, rep.Provision)
			}
			if rep.MessagesCounted != "engine" || rep.Uplinks < 10 || rep.Downlinks < 5 {
				t.Errorf("messages: %d up, %d down, counted by %q; want the engine's count", rep.Uplinks, rep.Downlinks, rep.MessagesCounted)
			}
			names, scheduling := map[string]bool{}, 0
			for _, p := range rep.Processes {
				names[p.Name] = true
				if p.Scheduling {
					scheduling++
				}
				// The kernel counts CPU time in 10 ms ticks: Mosquitto may
				// relay 5 devices' messages in less than one.
				if p.PeakRSS <= 0 || p.CPU < 0 || (p.CPU == 0 && p.Name != "mosquitto") {
					t.Errorf("process %+v: want its CPU time and memory", p)
				}
			}
			if !names["replica 1"] || !names["replica 2"] || !names["mosquitto"] || scheduling != 1 {
				t.Errorf("processes %+v: want both replicas, one scheduling, and Mosquitto", rep.Processes)
			}
		})
	}
}

// One failover run: the scheduler is killed after the rate limit's first
// burst, another replica takes over and starts the jobs left.
func TestFailoverRun(t *testing.T) {
	rep, err := bench.RunFailover(testContext(t), bench.FailoverConfig{
		Server: clusterOptions(t, 2), Devices: 20, Runs: 1, FileSize: 1024, Rate: 120, KillAfter: 1, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	run := rep.Runs[0]
	if run.Killed == run.Successor || run.Successor == "" || run.StartedBeforeKill >= 20 {
		t.Errorf("run %+v: want another replica to take over with jobs left", run)
	}
	// The successor takes the lead, then starts a job; a takeover is
	// promised within 10 s.
	if run.Takeover <= 0 || run.FirstJob < run.Takeover || run.FirstJob > 15*time.Second {
		t.Errorf("run %+v: want 0 < takeover <= first job start < 15 s after the kill", run)
	}
	if rep.FirstJob.Count != 1 || rep.FirstJob.Median != run.FirstJob {
		t.Errorf("summary %+v of one run %+v", rep.FirstJob, run)
	}
}

// `otter bench connect --broker mosquitto` runs the single node first and
// shows both reports side by side.
func TestConnectCommandSideBySide(t *testing.T) {
	opts := clusterOptions(t, 1)
	var out, errs bytes.Buffer
	code := cli.Execute(testContext(t), []string{"bench", "connect", "--devices", "4", "--idle", "0s", "--db", opts.DBURL, "--broker", "mosquitto", "-o", "json"},
		cli.Env{Stdout: &out, Stderr: &errs})
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var both struct {
		SingleNode bench.ConnectReport `json:"single_node"`
		Cluster    bench.ConnectReport `json:"cluster"`
	}
	if err := json.Unmarshal(out.Bytes(), &both); err != nil {
		t.Fatalf("output is not the two JSON reports: %v\n%s", err, out.String())
	}
	s, c := both.SingleNode, both.Cluster
	if s.Broker != bench.BrokerEmbedded || s.Connected != 4 || s.Replicas != 1 {
		t.Errorf("single node %+v: want 4 devices on the embedded broker", s)
	}
	if c.Broker != bench.BrokerMosquitto || c.Replicas != 1 || c.BrokerRSS <= 0 || c.BrokerBaseRSS <= 0 || c.AccountsRSS <= 0 || c.RSS <= 0 {
		t.Errorf("cluster %+v: want otter's and Mosquitto's memory", c)
	}
}
