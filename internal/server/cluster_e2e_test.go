package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/blob/s3test"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
)

// The whole cluster on real components: PostgreSQL, Mosquitto with the
// dynamic security plugin, versitygw as the S3 store of the firmware, and
// three `otter serve` processes. 300 SDK devices connect to Mosquitto with
// the accounts otter made for them; everything is written through a
// replica that does not schedule. The scheduling replica is killed with
// SIGKILL in the middle of the rollout, and later the broker is killed and
// started again (without persistence: every session is lost). Every job
// must still end succeeded exactly once.
func TestClusterSurvivesASchedulerKillAndABrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the otter binary and runs three replicas, Mosquitto, versitygw and 300 devices")
	}
	const devices = 300
	begin := time.Now()
	db := clusterDB(t)
	br := mosquittotest.Start(t)
	s3 := s3test.Start(t)
	bucket := s3.Bucket(t)
	// The replicas are child processes: they read the store's credentials
	// from their environment, as in production.
	for _, name := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(name, s3.Getenv(name))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	procs := startReplicas(t, db, 3, "--blob", s3.URL(bucket, "otter"),
		"--broker", brokerURL(br), "--broker-admin", "dynsec", "--broker-client-id", randomID("otter-sched-"))
	a, b, c := procs[0], procs[1], procs[2]
	apiB := client.New(b.httpURL, crashToken)
	waitWithin(t, 30*time.Second, "replica A to schedule, as B sees it", func() bool { return scheduler(apiB) == a.httpURL })

	r := &crashRig{t: t, proc: b, api: apiB, mqtt: "tcp://" + br.Addr, ob: newObserver()}
	t.Cleanup(func() { // before the replicas stop: says which devices the server thinks are behind
		if !t.Failed() {
			return
		}
		for d, err := range apiB.AllDevices(context.Background(), client.DeviceFilter{Product: "crash"}, client.ListOptions{Limit: 500}) {
			if err == nil && d.Versions["default"] != "1.1.0" {
				t.Logf("device %s: the server knows versions %v, online %v, last seen %v", d.Key, d.Versions, d.Online, d.LastSeen)
			}
		}
	})
	// Created through B: A makes their broker accounts, without which
	// Mosquitto would refuse them.
	fleet := r.fleet(ctx, "sim-", devices, 400*time.Millisecond)
	fw := r.firmware(ctx)
	if objs := s3.Objects(t, bucket); len(objs) != 1 || !strings.HasPrefix(objs[0], "otter/firmware/") {
		t.Fatalf("bucket after the upload holds %v, want the firmware's object only", objs)
	}
	// At most 15 in flight and 20 starts per second: the rollout lasts
	// long enough for a takeover and a broker restart in its middle.
	task, err := apiB.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush,
		Target: client.Target{All: true}, Policy: client.Policy{Rate: 1200, MaxConcurrent: 15}})
	if err != nil {
		t.Fatal(err)
	}

	at := r.until(func(t *client.Task) bool {
		return t.Counts[client.JobSucceeded] >= 30 && inFlight(t) > 0 && t.Counts[client.JobQueued] >= 150
	}, task.ID, "some jobs succeeded, some in flight and most queued")
	a.kill()
	killed := time.Now()
	t.Logf("killed the scheduling replica A with SIGKILL: counts %v", at.Counts)
	var next string
	waitWithin(t, 10*time.Second, "B or C to schedule within 10 s of the kill", func() bool {
		next = scheduler(apiB)
		return next == b.httpURL || next == c.httpURL
	})
	t.Logf("takeover: %s schedules %v after the kill", next, time.Since(killed).Round(10*time.Millisecond))

	at = r.until(func(t *client.Task) bool {
		return t.Counts[client.JobSucceeded] >= at.Counts[client.JobSucceeded]+30 && inFlight(t) > 0 && t.Counts[client.JobQueued] >= 40
	}, task.ID, "more jobs succeeded under the new scheduler, some in flight and some queued")
	br.Restart(t)
	t.Logf("restarted Mosquitto: counts %v", at.Counts)

	done := r.until(func(t *client.Task) bool { return t.State.Terminal() }, task.ID, "the task to end")
	r.checkExactlyOnce(ctx, done, fleet, devices)
	t.Logf("the cluster test ran %v", time.Since(begin).Round(100*time.Millisecond))
}
