package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/device"
)

// The crash test runs the real otter binary as a separate process, kills it
// with SIGKILL in the middle of a rollout, and starts it again on the same
// data folder and database: the rollout must finish with every job ending
// exactly once.

const crashToken = "otr_crash-admin-token-for-tests-only"

// buildOtter compiles cmd/otter into a temporary folder.
func buildOtter(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH, so the otter binary cannot be built: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "otter")
	cmd := exec.Command(gobin, "build", "-o", bin, "./cmd/otter")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/otter: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return freeAddrs(t, 1)[0]
}

// freeAddrs returns n distinct free loopback addresses. Every listener stays
// open until all are chosen: closed one by one, the kernel may hand the same
// port out twice, and a server given it for both --http and --mqtt fails.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// serverProcess is `otter serve` running as a child process; every start
// appends its output to one log file, shown when the test fails.
type serverProcess struct {
	t       *testing.T
	bin     string
	args    []string
	logPath string
	httpURL string

	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

func (p *serverProcess) start() {
	p.t.Helper()
	p.starts++
	logf, err := os.OpenFile(p.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %d: otter %s\n", p.starts, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), "OTTER_ADMIN_TOKEN="+crashToken)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start otter: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	p.waitReady()
}

// waitReady polls /readyz until the server answers.
func (p *serverProcess) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(time.Minute)
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.exited:
			p.t.Fatalf("otter exited at start %d:\n%s", p.starts, p.logTail())
		default:
		}
		if resp, err := hc.Get(p.httpURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("otter not ready a minute after start %d:\n%s", p.starts, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the server with SIGKILL: no shutdown code runs.
func (p *serverProcess) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("kill otter: %v", err)
	}
	<-p.exited
}

// stop ends the server in order at the end of the test (before its
// database is dropped), or kills it if it does not stop.
func (p *serverProcess) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	if p.t.Failed() {
		p.t.Logf("otter's log:\n%s", p.logTail())
	}
}

func (p *serverProcess) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	const keep = 6000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
}

// crashRig is a server process, its API, and the fleets watched by an
// observer.
type crashRig struct {
	t    *testing.T
	proc *serverProcess
	api  *client.Client
	mqtt string
	ob   *observer
}

// startCrashRig builds otter and starts it on free ports, with a fresh data
// folder and database.
func startCrashRig(t *testing.T) *crashRig {
	t.Helper()
	bin := buildOtter(t)
	dir := t.TempDir()
	db := storetest.URL(t)
	addrs := freeAddrs(t, 2)
	httpAddr, mqttAddr := addrs[0], addrs[1]
	p := &serverProcess{
		t: t, bin: bin, logPath: filepath.Join(dir, "otter.log"), httpURL: "http://" + httpAddr,
		args: []string{"serve", "--data", filepath.Join(dir, "data"), "--http", httpAddr, "--mqtt", mqttAddr, "--db", db},
	}
	t.Cleanup(p.stop) // runs before the database is dropped
	p.start()
	return &crashRig{t: t, proc: p, api: client.New(p.httpURL, crashToken), mqtt: "tcp://" + mqttAddr, ob: newObserver()}
}

// fleet starts n devices named prefix00001 and up, and waits until the
// server knows their versions.
func (r *crashRig) fleet(ctx context.Context, prefix string, n int, installTime time.Duration) *sim.Fleet {
	r.t.Helper()
	key, err := r.api.SigningKey(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	f, err := sim.Start(ctx, sim.Config{
		API: r.api, Broker: r.mqtt, PublicKey: key.PublicKey, Product: "crash", Prefix: prefix,
		Devices: n, Version: "1.0.0", InstallTime: installTime, OnEvent: r.ob.event,
		// The server comes back within seconds: reconnect quickly.
		RetryCap: time.Second,
	})
	if err != nil {
		r.t.Fatalf("start fleet: %v", err)
	}
	r.until(func(*client.Task) bool { return r.count(prefix, versionIs("1.0.0")) == n }, 0, "every device to report its version")
	return f
}

// firmware uploads version 1.1.0 of the "crash" product.
func (r *crashRig) firmware(ctx context.Context) *client.Firmware {
	r.t.Helper()
	fw, err := r.api.UploadFirmware(ctx, client.FirmwareUpload{Product: "crash", Version: "1.1.0"}, strings.NewReader(strings.Repeat("new image ", 800)))
	if err != nil {
		r.t.Fatal(err)
	}
	return fw
}

func versionIs(v string) func(client.Device) bool {
	return func(d client.Device) bool { return d.Versions["default"] == v }
}

// count returns how many devices whose key starts with prefix match; -1
// when the server does not answer.
func (r *crashRig) count(prefix string, match func(client.Device) bool) int {
	n := 0
	f := client.DeviceFilter{Product: "crash", Prefix: prefix}
	for d, err := range r.api.AllDevices(context.Background(), f, client.ListOptions{Limit: 500}) {
		if err != nil {
			return -1
		}
		if match(d) {
			n++
		}
	}
	return n
}

// until polls the task (id 0: no task) until cond holds. API errors count
// as "not yet": the server may be starting.
func (r *crashRig) until(cond func(*client.Task) bool, id int64, what string) *client.Task {
	r.t.Helper()
	return r.within(2*time.Minute, cond, id, what)
}

// within is until with a deadline d from now.
func (r *crashRig) within(d time.Duration, cond func(*client.Task) bool, id int64, what string) *client.Task {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var task *client.Task
		var err error
		if id != 0 {
			task, err = r.api.Task(context.Background(), id)
		}
		if err == nil && cond(task) {
			return task
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s (task %+v, %v)", what, task, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killAndRestart kills the server when cond holds, then starts it again
// on the same data folder, database and ports.
func (r *crashRig) killAndRestart(id int64, cond func(*client.Task) bool, what string) {
	r.t.Helper()
	at := r.until(cond, id, what)
	r.proc.kill()
	r.t.Logf("killed otter when %s: counts %v", what, at.Counts)
	r.proc.start()
}

func TestKilledServerFinishesTheRolloutExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the otter binary and runs a rollout across two server crashes")
	}
	const devices = 200
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := startCrashRig(t)
	fleet := r.fleet(ctx, "sim-", devices, 500*time.Millisecond)
	fw := r.firmware(ctx)
	// 20 starts per second after a burst of 100, at most 40 in flight: the
	// rollout takes several seconds.
	task, err := r.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush,
		Target: client.Target{All: true}, Policy: client.Policy{Rate: 1200, MaxConcurrent: 40}})
	if err != nil {
		t.Fatal(err)
	}

	// First crash: early, with a wave of jobs in flight and most queued.
	r.killAndRestart(task.ID, func(t *client.Task) bool {
		return t.Counts[client.JobSucceeded] >= 20 && inFlight(t) > 0 && t.Counts[client.JobQueued] >= 60
	}, "some jobs succeeded, some in flight and many queued")
	// Second crash: late, while the rate limit paces the last jobs.
	r.killAndRestart(task.ID, func(t *client.Task) bool {
		return t.Counts[client.JobSucceeded] >= 120 && inFlight(t) > 0 && t.Counts[client.JobQueued] >= 10
	}, "most jobs succeeded, some in flight and a few queued")

	done := r.until(func(t *client.Task) bool { return t.State.Terminal() }, task.ID, "the task to end")
	r.checkExactlyOnce(ctx, done, fleet, devices)
}

// checkExactlyOnce checks the outcome of the rollout: the task completed,
// each job ended once as succeeded, its counts equal its jobs, and each
// device installed the firmware once and runs it.
func (r *crashRig) checkExactlyOnce(ctx context.Context, done *client.Task, fleet *sim.Fleet, devices int) {
	t := r.t
	t.Helper()
	var jobs []client.Job
	for j, err := range r.api.AllTaskJobs(ctx, done.ID, nil, client.ListOptions{Limit: 500}) {
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
		if j.State != client.JobSucceeded || j.Attempt != 1 {
			t.Errorf("job %d of %s is %s at attempt %d (code %q: %s), want succeeded at its first attempt", j.ID, j.Device, j.State, j.Attempt, j.Code, j.Message)
		}
	}
	if done.State != client.TaskCompleted || done.Counts[client.JobSucceeded] != int64(devices) {
		t.Fatalf("task ended %s with counts %v, want completed with %d succeeded", done.State, done.Counts, devices)
	}
	checkCounts(t, done, jobs)
	r.checkJobEvents(ctx, done.ID, jobs)
	keys := r.deviceKeys(devices)
	r.ob.awaitSuccesses(keys, 30*time.Second)
	for key := range keys {
		if u, s := r.ob.count(device.EventUpgrade, key), r.ob.count(device.EventSucceeded, key); u != 1 || s != 1 {
			t.Errorf("device %s started %d upgrades and succeeded %d times, want exactly 1 each", key, u, s)
		}
	}
	if st := fleet.Stats(); st.Installs != int64(devices) || st.Versions["1.1.0"] != devices {
		t.Errorf("fleet %+v: want %d installs and every device on 1.1.0", st, devices)
	}
	r.until(func(*client.Task) bool { return r.count("sim-", versionIs("1.1.0")) == devices }, 0, "the server to know every device runs 1.1.0")
	t.Logf("%d devices upgraded exactly once across %d server starts; %d duplicate deliveries seen by devices",
		devices, r.proc.starts, r.ob.count(device.EventDuplicate, ""))
}

// checkJobEvents checks the history: each job was started once and
// succeeded once.
func (r *crashRig) checkJobEvents(ctx context.Context, taskID int64, jobs []client.Job) {
	t := r.t
	t.Helper()
	notified, succeeded := map[int64]int{}, map[int64]int{}
	for e, err := range r.api.AllEvents(ctx, client.EventFilter{Kind: "job", Task: taskID}, client.ListOptions{Limit: 500}) {
		if err != nil {
			t.Fatal(err)
		}
		switch e.Action {
		case string(client.JobNotified):
			notified[e.JobID]++
		case string(client.JobSucceeded):
			succeeded[e.JobID]++
		}
	}
	for _, j := range jobs {
		if notified[j.ID] != 1 || succeeded[j.ID] != 1 {
			t.Errorf("job %d of %s: %d notified and %d succeeded events, want 1 of each", j.ID, j.Device, notified[j.ID], succeeded[j.ID])
		}
	}
}

func (r *crashRig) deviceKeys(n int) map[string]bool {
	out := make(map[string]bool, n)
	for i := 1; i <= n; i++ {
		out[fmt.Sprintf("sim-%05d", i)] = true
	}
	return out
}

func TestDevicesAwayAfterACrashAreOfflineAndNotSent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the otter binary and restarts it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := startCrashRig(t)
	stay := r.fleet(ctx, "sim-", 6, 0)
	awayCtx, leave := context.WithCancel(ctx)
	away := r.fleet(awayCtx, "away-", 3, 0)

	// The server dies while every device is online; three devices are
	// gone by the time it is back.
	r.proc.kill()
	away.Stop(leave)
	r.proc.start()
	r.until(func(*client.Task) bool { return stay.Stats().Connected == 6 }, 0, "the 6 remaining devices to reconnect")
	offline := func(d client.Device) bool { return !d.Online }
	r.within(10*time.Second, func(*client.Task) bool { return r.count("away-", offline) == 3 }, 0,
		"the 3 devices that did not come back to be offline (the server died without seeing them go)")

	// A rollout capped at 2 in flight reaches every connected device and
	// sends nothing to the absent ones: their jobs wait in the queue.
	task, err := r.api.CreateTask(ctx, client.TaskCreate{FirmwareID: r.firmware(ctx).ID, Mode: client.ModePush,
		Target: client.Target{All: true}, Policy: client.Policy{MaxConcurrent: 2}})
	if err != nil {
		t.Fatal(err)
	}
	r.within(30*time.Second, func(task *client.Task) bool { return task.Counts[client.JobSucceeded] == 6 }, task.ID, "the 6 connected devices to upgrade")
	for j, err := range r.api.AllTaskJobs(ctx, task.ID, nil, client.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(j.Device, "away-") && j.State != client.JobQueued {
			t.Errorf("job of absent device %s is %s, want queued until it connects", j.Device, j.State)
		}
	}
}
