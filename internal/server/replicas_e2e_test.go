package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/server"
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
	bin := buildOtter(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	// Download URLs name replica B, which stays up: in production
	// --public-url is the load balancer in front of every replica.
	public := "http://" + addrs[1]
	procs := make([]*serverProcess, len(addrs))
	for i, addr := range addrs {
		procs[i] = &serverProcess{
			t: t, bin: bin, logPath: filepath.Join(dir, fmt.Sprintf("otter-%c.log", 'a'+i)), httpURL: "http://" + addr,
			args: []string{"serve", "--data", data, "--http", addr, "--mqtt", freeAddr(t), "--db", db,
				"--public-url", public, "--advertise-url", "http://" + addr},
		}
		t.Cleanup(procs[i].stop)
		procs[i].start() // A first: it takes the lead
	}
	a, b, c := procs[0], procs[1], procs[2]
	apiB := client.New(b.httpURL, crashToken)
	scheduler := func(api *client.Client) string {
		info, err := api.ServerInfo(ctx)
		if err != nil {
			return ""
		}
		for _, r := range info.Replicas {
			if r.Scheduling {
				return r.URL
			}
		}
		return ""
	}
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
	for i := range devices {
		name := fmt.Sprintf("dev-%02d", i)
		if u, s := ob.count(device.EventUpgrade, name), ob.count(device.EventSucceeded, name); u != 1 || s != 1 {
			t.Errorf("device %s started %d upgrades and succeeded %d times, want exactly 1 each", name, u, s)
		}
	}
	waitWithin(t, 30*time.Second, "the server to know every device runs 1.1.0", func() bool { return countVersion(apiB, "1.1.0") == devices })
	if t.Failed() {
		for _, p := range procs {
			t.Logf("%s:\n%s", p.logPath, p.logTail())
		}
	}
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
