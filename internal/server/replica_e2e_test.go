package server_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/server/servertest"
	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// Three `otter serve` processes share one PostgreSQL database and one data
// folder (the firmware files and the signing key, as a shared volume
// would). HTTP devices talk to the two replicas that do not schedule, and
// a push task is created through one of them; the scheduling replica is
// killed with SIGKILL in the middle of the rollout. Another replica must
// take over within 10 s and every job end succeeded exactly once.
func TestReplicaTakesOverWhenTheSchedulerIsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the otter binary and runs three replicas")
	}
	// Replicas need PostgreSQL (skipped without it, like the S3 tests: CI
	// runs this file in its PostgreSQL pass).
	db := postgresURL(t)
	const devices = 30
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	procs := startReplicas(t, db, 3)
	a, b, c := procs[0], procs[1], procs[2]
	apiB := client.New(b.httpURL, crashToken)
	waitWithin(t, 30*time.Second, "replica A to schedule, as B sees it", func() bool { return scheduler(apiB) == a.httpURL })
	info, err := apiB.ServerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Replicas) != 3 {
		t.Fatalf("GET /api/v1/server lists %d replicas, want 3: %+v", len(info.Replicas), info.Replicas)
	}

	// Everything is written through B, which forwards to A.
	if _, err := apiB.CreateProduct(ctx, client.ProductCreate{Key: "fleet"}); err != nil {
		t.Fatal(err)
	}
	key, err := apiB.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ob := newObserver()
	var wg sync.WaitGroup
	devCtx, stopDevices := context.WithCancel(ctx)
	defer func() { stopDevices(); wg.Wait() }()
	for i := range devices {
		name := fmt.Sprintf("dev-%02d", i)
		d, err := apiB.CreateDevice(ctx, "fleet", client.DeviceCreate{Key: name})
		if err != nil {
			t.Fatal(err)
		}
		base := b.httpURL
		if i%2 == 1 {
			base = c.httpURL
		}
		cl, err := device.New(device.Config{
			HTTPBase: base, Product: "fleet", Device: name, Secret: d.Secret, PublicKey: key.PublicKey,
			Installer: &versionInstaller{version: "1.0.0"}, PollInterval: 100 * time.Millisecond,
			RetryBase: 50 * time.Millisecond, RetryCap: time.Second,
			OnEvent: func(e device.Event) { ob.event(name, e) },
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = cl.Run(devCtx)
		}()
	}
	r := &crashRig{t: t, api: apiB, ob: ob}
	waitWithin(t, time.Minute, "every device to report 1.0.0", func() bool { return countVersion(apiB, "1.0.0") == devices })
	fw, err := apiB.UploadFirmware(ctx, client.FirmwareUpload{Product: "fleet", Version: "1.1.0"}, strings.NewReader(strings.Repeat("new image ", 800)))
	if err != nil {
		t.Fatal(err)
	}
	// Three at a time: the rollout lasts a few seconds.
	task, err := apiB.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush,
		Target: client.Target{All: true}, Policy: client.Policy{MaxConcurrent: 3}})
	if err != nil {
		t.Fatal(err)
	}
	at := r.until(func(t *client.Task) bool {
		return t.Counts[client.JobSucceeded] >= 6 && inFlight(t) > 0 && t.Counts[client.JobQueued] >= 10
	}, task.ID, "some jobs succeeded, some in flight and many queued")
	a.kill()
	killed := time.Now()
	t.Logf("killed the scheduling replica A with SIGKILL: counts %v", at.Counts)
	var next string
	waitWithin(t, 10*time.Second, "B or C to schedule within 10 s of the kill", func() bool {
		next = scheduler(apiB)
		return next == b.httpURL || next == c.httpURL
	})
	t.Logf("takeover: %s schedules %v after the kill", next, time.Since(killed).Round(10*time.Millisecond))

	done := r.until(func(t *client.Task) bool { return t.State.Terminal() }, task.ID, "the task to end")
	var jobs []client.Job
	for j, err := range apiB.AllTaskJobs(ctx, done.ID, nil, client.ListOptions{Limit: 500}) {
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
		if j.State != client.JobSucceeded || j.Attempt != 1 {
			t.Errorf("job %d of %s is %s at attempt %d (%s), want succeeded at its first attempt", j.ID, j.Device, j.State, j.Attempt, j.Message)
		}
	}
	if done.State != client.TaskCompleted || done.Counts[client.JobSucceeded] != devices {
		t.Fatalf("task ended %s with counts %v, want completed with %d succeeded", done.State, done.Counts, devices)
	}
	checkCounts(t, done, jobs)
	r.checkJobEvents(ctx, done.ID, jobs)
	names := make(map[string]bool, devices)
	for i := range devices {
		names[fmt.Sprintf("dev-%02d", i)] = true
	}
	ob.awaitSuccesses(names, 30*time.Second)
	for i := range devices {
		name := fmt.Sprintf("dev-%02d", i)
		if u, s := ob.count(device.EventUpgrade, name), ob.count(device.EventSucceeded, name); u != 1 || s != 1 {
			t.Errorf("device %s started %d upgrades and succeeded %d times, want exactly 1 each", name, u, s)
		}
	}
	waitWithin(t, 30*time.Second, "the server to know every device runs 1.1.0", func() bool { return countVersion(apiB, "1.1.0") == devices })
}

// startReplicas starts n `otter serve` processes on database db, sharing
// one data folder (the firmware files and the signing key, as a shared
// volume would), each with its own ports. The first one started takes the
// lead. Download URLs name the second, which the tests keep up: in
// production --public-url is the load balancer in front of every replica.
func startReplicas(t *testing.T, db string, n int, args ...string) []*serverProcess {
	t.Helper()
	bin := buildOtter(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// One HTTP and one MQTT address per replica, all distinct.
	addrs := freeAddrs(t, 2*n)
	mqttAddrs := addrs[n:]
	addrs = addrs[:n]
	procs := make([]*serverProcess, n)
	for i, addr := range addrs {
		procs[i] = &serverProcess{
			t: t, bin: bin, logPath: filepath.Join(dir, fmt.Sprintf("otter-%c.log", 'a'+i)), httpURL: "http://" + addr,
			args: append([]string{"serve", "--data", data, "--http", addr, "--mqtt", mqttAddrs[i], "--db", db,
				"--public-url", "http://" + addrs[min(1, n-1)], "--advertise-url", "http://" + addr}, args...),
		}
		t.Cleanup(procs[i].stop)
		procs[i].start()
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs {
				t.Logf("%s:\n%s", p.logPath, p.logTail())
			}
		}
	})
	return procs
}

// scheduler returns the URL of the replica that schedules, as api's
// replica sees it; "" when none does or it does not answer.
func scheduler(api *client.Client) string {
	info, err := api.ServerInfo(context.Background())
	if err != nil {
		return ""
	}
	for _, r := range info.Replicas {
		if r.Scheduling && !r.Gone {
			return r.URL
		}
	}
	return ""
}

// A replica whose signing key is not the cluster's is refused at start:
// devices would reject the commands it signs.
func TestReplicaWithAnotherSigningKeyIsRefused(t *testing.T) {
	db := postgresURL(t)
	ctx := context.Background()
	first, err := server.Start(ctx, server.Config{DataDir: t.TempDir(), DBURL: db, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := server.Start(ctx, server.Config{DataDir: t.TempDir(), DBURL: db, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		second.Close()
		t.Fatal("a replica with its own signing key started on the cluster's database")
	}
	if !strings.Contains(err.Error(), "signing key") || !strings.Contains(err.Error(), "same key file") {
		t.Fatalf("refusal %q does not say the signing key differs from the cluster's", err)
	}
}

// waitWithin polls cond until it holds or d passes.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countVersion counts the devices of product "fleet" the server knows run
// version v; -1 when it does not answer.
func countVersion(api *client.Client, v string) int {
	n := 0
	for d, err := range api.AllDevices(context.Background(), client.DeviceFilter{Product: "fleet"}, client.ListOptions{Limit: 500}) {
		if err != nil {
			return -1
		}
		if d.Versions["default"] == v {
			n++
		}
	}
	return n
}

// versionInstaller is a device that installs by switching its version.
type versionInstaller struct {
	mu      sync.Mutex
	version string
}

func (m *versionInstaller) Versions(context.Context) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return map[string]string{"default": m.version}, nil
}

func (m *versionInstaller) Write(_ context.Context, _ wire.Upgrade, image io.Reader) error {
	_, err := io.Copy(io.Discard, image)
	return err
}

func (m *versionInstaller) Activate(context.Context, wire.Upgrade) error { return nil }

func (m *versionInstaller) Reboot(_ context.Context, up wire.Upgrade) error {
	m.mu.Lock()
	m.version = up.Version
	m.mu.Unlock()
	return nil
}

// Two replicas behind an external broker: only the scheduling one is the
// broker's client, under the client id both are given. It is killed with
// SIGKILL in the middle of a rollout of MQTT devices; the other takes over
// the lead and the broker session (with the uplinks the dead one had not
// acknowledged), and every job ends succeeded exactly once.
func TestReplicaTakesOverTheExternalBrokerSession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the otter binary and runs two replicas and Mosquitto")
	}
	br := mosquittotest.Start(t)
	db := clusterDB(t)
	const devices = 40
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	procs := startReplicas(t, db, 2, "--broker", brokerURL(br), "--broker-admin", "dynsec", "--broker-client-id", randomID("otter-sched-"))
	a, b := procs[0], procs[1]
	apiB := client.New(b.httpURL, crashToken)
	waitWithin(t, 30*time.Second, "replica A to schedule", func() bool { return scheduler(apiB) == a.httpURL })
	r := &crashRig{t: t, proc: b, api: apiB, mqtt: "tcp://" + br.Addr, ob: newObserver()}
	fleet := r.fleet(ctx, "sim-", devices, 300*time.Millisecond) // created through B: accounts made by A
	fw := r.firmware(ctx)
	task, err := apiB.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush,
		Target: client.Target{All: true}, Policy: client.Policy{MaxConcurrent: 4}})
	if err != nil {
		t.Fatal(err)
	}
	at := r.until(func(t *client.Task) bool {
		return t.Counts[client.JobSucceeded] >= 8 && inFlight(t) > 0 && t.Counts[client.JobQueued] >= 10
	}, task.ID, "some jobs succeeded, some in flight and many queued")
	a.kill()
	killed := time.Now()
	t.Logf("killed the scheduling replica A with SIGKILL: counts %v", at.Counts)
	waitWithin(t, 10*time.Second, "B to schedule within 10 s of the kill", func() bool { return scheduler(apiB) == b.httpURL })
	t.Logf("takeover: B schedules %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	done := r.until(func(t *client.Task) bool { return t.State.Terminal() }, task.ID, "the task to end")
	r.checkExactlyOnce(ctx, done, fleet, devices)
}

// The scheduling replica's lock connection is closed by PostgreSQL (as
// when the database restarts): the replica stops scheduling at once, a
// replica (either) takes the lead again by itself, /metrics says which,
// and task writes through the other one work again.
func TestReplicasRecoverWhenTheLockConnectionDies(t *testing.T) {
	db := postgresURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	start := func() *server.Server {
		s, err := server.Start(ctx, server.Config{DataDir: dir, DBURL: db, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
			AdminToken: crashToken, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := start(), start()
	if got := leaderGauge(t, a); got != 1 {
		t.Fatalf("the first replica's otter_scheduler_leader is %d, want 1", got)
	}
	if got := leaderGauge(t, b); got != 0 {
		t.Fatalf("the second replica's otter_scheduler_leader is %d, want 0", got)
	}

	sqldb, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	var n int
	err = sqldb.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = 1869902962 AND objsubid = 2 AND objid = hashtext(current_schema())::oid`).Scan(&n)
	if err != nil || n != 1 {
		var locks, schema string
		_ = sqldb.QueryRowContext(ctx, `SELECT current_schema(), hashtext(current_schema())::oid::text || ' ' || (SELECT string_agg(classid::text || '/' || objid::text || '/' || objsubid::text || '/' || granted::text, ', ') FROM pg_locks WHERE locktype = 'advisory')`).Scan(&schema, &locks)
		t.Fatalf("terminate the lock's connection: %d terminated, %v (schema %s, advisory locks %s)", n, err, schema, locks)
	}
	lost := time.Now()
	// The replica that led may take the lead again at once (it fenced
	// itself first): a new term shows as a later scheduling_since.
	var leader client.Replica
	waitWithin(t, 10*time.Second, "a replica to take the lead again", func() bool {
		info, err := client.New(b.HTTPURL(), crashToken).ServerInfo(ctx)
		if err != nil || len(info.Replicas) == 0 {
			return false
		}
		leader = info.Replicas[0]
		return leader.Scheduling && leader.SchedulingSince.After(lost)
	})
	t.Logf("%s schedules again %v after the lock's connection died", leader.URL, time.Since(lost).Round(10*time.Millisecond))
	leading, follower := a, b
	if leader.URL == b.HTTPURL() {
		leading, follower = b, a
	}
	if l, f := leaderGauge(t, leading), leaderGauge(t, follower); l != 1 || f != 0 {
		t.Errorf("otter_scheduler_leader is %d on the leader and %d on the other, want 1 and 0", l, f)
	}
	api := client.New(follower.HTTPURL(), crashToken)
	if _, err := api.CreateProduct(ctx, client.ProductCreate{Key: "fleet"}); err != nil {
		t.Fatal(err)
	}
	d, err := api.CreateDevice(ctx, "fleet", client.DeviceCreate{Key: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := api.UploadFirmware(ctx, client.FirmwareUpload{Product: "fleet", Version: "1.1.0"}, strings.NewReader("new image"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := api.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := device.New(device.Config{HTTPBase: follower.HTTPURL(), Product: "fleet", Device: "d1", Secret: d.Secret, PublicKey: key.PublicKey,
		Installer: &versionInstaller{version: "1.0.0"}, PollInterval: 100 * time.Millisecond, RetryCap: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	devCtx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); _ = cl.Run(devCtx) }()
	defer func() { stop(); <-ran }()
	waitWithin(t, 30*time.Second, "d1 to report 1.0.0", func() bool { return countVersion(api, "1.0.0") == 1 })
	task, err := api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}})
	if err != nil {
		t.Fatal(err)
	}
	waitWithin(t, 30*time.Second, "the task to complete", func() bool {
		got, err := api.Task(ctx, task.ID)
		return err == nil && got.State == client.TaskCompleted && got.Counts[client.JobSucceeded] == 1
	})
}

// leaderGauge reads otter_scheduler_leader from s's /metrics; -1 when it
// cannot.
func leaderGauge(t *testing.T, s *server.Server) int {
	t.Helper()
	resp, err := http.Get(s.HTTPURL() + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "otter_scheduler_leader "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// A single server (SQLite, or PostgreSQL alone) is one replica that
// schedules, and `/metrics` says so.
func TestASingleServerIsOneSchedulingReplica(t *testing.T) {
	s := servertest.Start(t)
	info, err := client.New(s.HTTPURL(), s.AdminToken()).ServerInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Replicas) != 1 {
		t.Fatalf("replicas %+v, want this one only", info.Replicas)
	}
	r := info.Replicas[0]
	if !r.Scheduling || !r.This || r.Gone || r.URL != s.HTTPURL() || r.SchedulingSince == nil || r.Heartbeat.IsZero() {
		t.Errorf("replica %+v, want this one, scheduling, alive, at %s", r, s.HTTPURL())
	}
	if got := leaderGauge(t, s); got != 1 {
		t.Errorf("otter_scheduler_leader is %d, want 1", got)
	}
}

// A stop that has run out of time (a loaded engine can spend it all on its
// last commits) still stops cleanly: only the replica's row, which the
// others prune, is left behind. It used to make `otter serve` exit 1.
func TestShutdownWithNoTimeLeftSucceeds(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	if err := o.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shut down with no time left: %v", err)
	}
}
