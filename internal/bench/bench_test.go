package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/bench"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// benchFleet runs the fleet benchmark with the server in this process (a
// test binary cannot start `otter bench server`); -cpuprofile then
// profiles the server and the devices together.
func benchFleet(b *testing.B, devices int) {
	var rep *bench.FleetReport
	for b.Loop() {
		var err error
		rep, err = bench.RunFleet(context.Background(), bench.FleetConfig{
			Devices: devices, FileSize: 64 << 10, Timeout: 5 * time.Minute,
			Server: bench.ServerOptions{DBURL: os.Getenv(storetest.PostgresEnv)},
		})
		if err == nil {
			err = rep.Err()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(rep.TaskTime.Seconds(), "s/task")
	b.ReportMetric(rep.UpgradesPerSecond, "upgrades/s")
	b.ReportMetric(rep.MessagesPerSecond, "msgs/s")
	b.ReportMetric(rep.Upgrade.P99.Seconds(), "s/p99-command")
}

// BenchmarkFleet100 upgrades 100 simulated devices with one push task.
func BenchmarkFleet100(b *testing.B) { benchFleet(b, 100) }

// BenchmarkFleet1000 upgrades 1,000 simulated devices with one push task.
func BenchmarkFleet1000(b *testing.B) { benchFleet(b, 1000) }

// BenchmarkJobs10000 starts the 10,000 jobs of one push task with a
// downlink that drops every message: the store is the limit.
func BenchmarkJobs10000(b *testing.B) {
	var rep *bench.JobsReport
	for b.Loop() {
		var err error
		rep, err = bench.RunJobs(context.Background(), bench.JobsConfig{
			Jobs: 10000, DBURL: os.Getenv(storetest.PostgresEnv), DataDir: b.TempDir(),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(rep.JobsPerSecond, "jobs/s")
	b.ReportMetric(rep.CreateTask.Seconds(), "s/create-task")
}
