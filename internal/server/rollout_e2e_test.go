package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// End-to-end tests of the rollout policy: a real server on ephemeral ports,
// its store (PostgreSQL when OTTER_TEST_POSTGRES_URL is set), and simulated
// devices on the SDK over MQTT. Each asserts on outcomes the operator or a
// device can see: job states and times through the API, SDK events.

// holdFor is how long a test watches that the engine does NOT do
// something (start a phase, start a paused task's jobs). The engine plans
// on every job change and at least once a second, so this spans two ticks.
const holdFor = 2200 * time.Millisecond

// observer records the SDK events of a fleet. It also tracks the devices
// inside an upgrade window that starts when the device receives the command
// (the server stored the job as started before sending it) and ends when
// the server has taken the device's "rebooting" report, or the job failed or
// was cancelled on the device: a window inside the server's in-flight time
// of the job, so more windows open at once than a cap proves the server
// broke the cap.
type observer struct {
	mu     sync.Mutex
	kinds  map[device.EventKind]map[string]int
	open   map[string]bool // window key -> open
	closed map[string]bool // windows that closed before their start was seen
	now    int
	max    int
}

func newObserver() *observer {
	return &observer{kinds: map[device.EventKind]map[string]int{}, open: map[string]bool{}, closed: map[string]bool{}}
}

func (ob *observer) event(key string, e device.Event) {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if ob.kinds[e.Kind] == nil {
		ob.kinds[e.Kind] = map[string]int{}
	}
	ob.kinds[e.Kind][key]++
	window := fmt.Sprintf("%s/%s/%d", key, e.Job, e.Attempt)
	switch {
	case e.Kind == device.EventUpgrade && !ob.closed[window]:
		ob.open[window] = true
		ob.now++
		ob.max = max(ob.max, ob.now)
	case e.Kind == device.EventFailed || e.Kind == device.EventCancelled ||
		e.Kind == device.EventProgress && e.State == wire.StateRebooting:
		if ob.open[window] {
			delete(ob.open, window)
			ob.now--
		} else {
			ob.closed[window] = true
		}
	}
}

// count returns how many events of kind device key saw; key "" sums all.
// awaitSuccesses waits, up to d, until each of the devices keys has seen
// its upgrade succeed; the caller then checks the counts. A device learns
// that its report after the reboot was stored from the PUBACK, which
// follows the commit a test reads the task's completion from: its success
// event may come a little after.
func (ob *observer) awaitSuccesses(keys map[string]bool, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		missing := false
		for key := range keys {
			if ob.count(device.EventSucceeded, key) == 0 {
				missing = true
				break
			}
		}
		if !missing {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ob *observer) count(kind device.EventKind, key string) int {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if key != "" {
		return ob.kinds[kind][key]
	}
	n := 0
	for _, c := range ob.kinds[kind] {
		n += c
	}
	return n
}

// devices returns the devices that saw at least one event of kind.
func (ob *observer) devices(kind device.EventKind) []string {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	var out []string
	for k := range ob.kinds[kind] {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (ob *observer) maxInFlight() int {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	return ob.max
}

// inFlight sums a task's jobs that started and have not ended.
func inFlight(t *client.Task) int64 {
	var n int64
	for s, c := range t.Counts {
		if s != client.JobQueued && !s.Terminal() {
			n += c
		}
	}
	return n
}

// sampleInFlight polls the task's counts until the returned function is
// called, which returns the most jobs it saw in flight at once.
func (o *otter) sampleInFlight(ctx context.Context, id int64) func() int64 {
	ctx, cancel := context.WithCancel(ctx)
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			task, err := o.api.Task(ctx, id)
			if err != nil {
				if ctx.Err() == nil {
					o.t.Errorf("sample task %d: %v", id, err)
				}
				return
			}
			if n := inFlight(task); n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(5 * time.Millisecond) // a sampling period, not synchronization
		}
	}()
	return func() int64 {
		cancel()
		<-done
		return peak.Load()
	}
}

// create creates a push task on every device of the firmware's product
// unless target says otherwise.
func (o *otter) create(ctx context.Context, tc client.TaskCreate) *client.Task {
	o.t.Helper()
	if tc.Mode == "" {
		tc.Mode = client.ModePush
	}
	if tc.Target.Devices == nil && tc.Target.Tags == nil {
		tc.Target.All = true
	}
	task, err := o.api.CreateTask(ctx, tc)
	if err != nil {
		o.t.Fatalf("create task: %v", err)
	}
	return task
}

// jobs lists every job of a task through the API's pages.
func (o *otter) jobs(ctx context.Context, id int64) []client.Job {
	o.t.Helper()
	var out []client.Job
	for j, err := range o.api.AllTaskJobs(ctx, id, nil, client.ListOptions{Limit: 100}) {
		if err != nil {
			o.t.Fatalf("list jobs of task %d: %v", id, err)
		}
		out = append(out, j)
	}
	return out
}

// settled waits until every job of a task has ended, then checks that the
// task's counts and total equal its jobs, one job per device.
func (o *otter) settled(ctx context.Context, id int64) (*client.Task, []client.Job) {
	o.t.Helper()
	var jobs []client.Job
	o.eventually(func() bool {
		jobs = o.jobs(ctx, id)
		return !slices.ContainsFunc(jobs, func(j client.Job) bool { return !j.State.Terminal() })
	}, fmt.Sprintf("every job of task %d to end", id))
	task, err := o.api.Task(ctx, id)
	if err != nil {
		o.t.Fatal(err)
	}
	checkCounts(o.t, task, jobs)
	return task, jobs
}

// checkCounts compares a task's counts with its listed jobs.
func checkCounts(t *testing.T, task *client.Task, jobs []client.Job) {
	t.Helper()
	want := map[client.JobState]int64{}
	seen := map[string]bool{}
	for _, j := range jobs {
		want[j.State]++
		if seen[j.Device] {
			t.Errorf("task %d has two jobs for device %s", task.ID, j.Device)
		}
		seen[j.Device] = true
	}
	for _, s := range client.JobStates {
		if task.Counts[s] != want[s] {
			t.Errorf("task %d counts %s = %d, but %d jobs are %s (counts %v)", task.ID, s, task.Counts[s], want[s], s, task.Counts)
		}
	}
	if task.Total != int64(len(jobs)) {
		t.Errorf("task %d total %d, but it has %d jobs", task.ID, task.Total, len(jobs))
	}
}

// holds checks that cond stays true for holdFor: a negative outcome (the
// engine did not start something) needs a window to be observed in.
func (o *otter) holds(cond func() (bool, string), what string) {
	o.t.Helper()
	end := time.Now().Add(holdFor)
	for time.Now().Before(end) {
		if ok, got := cond(); !ok {
			o.t.Fatalf("%s: %s", what, got)
		}
		time.Sleep(20 * time.Millisecond) // a sampling period, not synchronization
	}
}

// taskNow reads a task, failing the test on error.
func (o *otter) taskNow(ctx context.Context, id int64) *client.Task {
	o.t.Helper()
	task, err := o.api.Task(ctx, id)
	if err != nil {
		o.t.Fatal(err)
	}
	return task
}

func (o *otter) events(ctx context.Context, f client.EventFilter) []client.Event {
	o.t.Helper()
	var out []client.Event
	for e, err := range o.api.AllEvents(ctx, f, client.ListOptions{Limit: 500}) {
		if err != nil {
			o.t.Fatalf("list events: %v", err)
		}
		out = append(out, e)
	}
	return out
}

func TestConcurrencyCapIsNeverExceeded(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	ob := newObserver()
	fleet := o.fleet(ctx, "demo", 30, func(c *sim.Config) {
		c.InstallTime = 300 * time.Millisecond
		c.OnEvent = ob.event
	})
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Policy: client.Policy{MaxConcurrent: 5}})
	stop := o.sampleInFlight(ctx, task.ID)
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	serverPeak := stop()
	done, _ := o.settled(ctx, task.ID)

	if done.Counts[client.JobSucceeded] != 30 {
		t.Fatalf("counts %v, want 30 succeeded", done.Counts)
	}
	devicePeak := ob.maxInFlight()
	if serverPeak > 5 || devicePeak > 5 {
		t.Fatalf("in flight at once: %d seen in the task's counts, %d seen by the devices; the cap is 5", serverPeak, devicePeak)
	}
	if max(serverPeak, int64(devicePeak)) != 5 {
		t.Fatalf("at most %d (server) and %d (devices) jobs ran at once: the cap of 5 was never reached, so the test proves nothing", serverPeak, devicePeak)
	}
	if v := fleet.Stats().Versions["1.1.0"]; v != 30 {
		t.Fatalf("%d devices run 1.1.0, want 30", v)
	}
}

func TestRateIsRespected(t *testing.T) {
	const (
		devices = 40
		rate    = 300 // per minute: 5 per second
		perSec  = rate / 60.0
		burst   = rate / 12 // the bucket holds five seconds' worth
	)
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	o.fleet(ctx, "demo", devices, nil)
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Policy: client.Policy{Rate: rate}})
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	_, jobs := o.settled(ctx, task.ID)

	var starts []time.Time
	for _, j := range jobs {
		if j.State != client.JobSucceeded || j.StartedAt == nil {
			t.Fatalf("job of %s is %s started %v, want succeeded with a start time", j.Device, j.State, j.StartedAt)
		}
		starts = append(starts, *j.StartedAt)
	}
	sort.Slice(starts, func(a, b int) bool { return starts[a].Before(starts[b]) })
	first, last := starts[0], starts[len(starts)-1]
	// A token bucket: by any time t after the first start, at most the
	// burst plus what refilled since were started (one token of slack for
	// the gap between the engine's plan and the job's start time).
	for i, s := range starts {
		if allowed := burst + perSec*s.Sub(first).Seconds() + 1; float64(i+1) > allowed {
			t.Fatalf("%d jobs started within %s of the first, more than the %g a rate of %d/min with a burst of %d allows", i+1, s.Sub(first), allowed, rate, burst)
		}
	}
	// Any 2-second window holds at most the burst plus two seconds' worth.
	for i := range starts {
		n := 0
		for _, s := range starts[i:] {
			if s.Sub(starts[i]) < 2*time.Second {
				n++
			}
		}
		if float64(n) > burst+2*perSec+1 {
			t.Fatalf("%d jobs started in the 2 s after %s, more than %g", n, starts[i].Sub(first), burst+2*perSec+1)
		}
	}
	// The devices beyond the burst need (devices-burst)/rate: the rollout
	// took that long, and not much longer.
	want := time.Duration(float64(devices-burst) / perSec * float64(time.Second))
	if took := last.Sub(first); took < want-200*time.Millisecond || took > want+4*time.Second {
		t.Fatalf("starts spread over %s; at %d/min with a burst of %d, %d devices need about %s", took, rate, burst, devices, want)
	}
}

// phaseOf groups a task's jobs by phase number (from 1).
func phaseOf(jobs []client.Job) map[int][]client.Job {
	out := map[int][]client.Job{}
	for _, j := range jobs {
		out[j.Phase] = append(out[j.Phase], j)
	}
	return out
}

func TestPhasesAdvanceWhenEachSucceeds(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	o.fleet(ctx, "demo", 20, func(c *sim.Config) { c.InstallTime = 100 * time.Millisecond })
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID,
		Policy: client.Policy{Phases: []float64{10, 50, 100}, PhaseSuccess: 100}})
	done := o.waitTask(ctx, task.ID, client.TaskCompleted)
	_, jobs := o.settled(ctx, task.ID)

	if done.Phase != 3 || done.Counts[client.JobSucceeded] != 20 {
		t.Fatalf("task ended in phase %d with counts %v, want phase 3 (the last) and 20 succeeded", done.Phase, done.Counts)
	}
	phases := phaseOf(jobs)
	if len(phases[1]) != 2 || len(phases[2]) != 8 || len(phases[3]) != 10 {
		t.Fatalf("phase sizes %d, %d, %d; want 2, 8, 10 for 10%%, 50%%, 100%% of 20", len(phases[1]), len(phases[2]), len(phases[3]))
	}
	// With phase_success 100 a phase starts only after every job of the one
	// before succeeded.
	for p := 2; p <= 3; p++ {
		var lastDone, firstStart time.Time
		for _, j := range phases[p-1] {
			lastDone = latest(lastDone, j.UpdatedAt)
		}
		for _, j := range phases[p] {
			if firstStart.IsZero() || j.StartedAt.Before(firstStart) {
				firstStart = *j.StartedAt
			}
		}
		if firstStart.Before(lastDone) {
			t.Fatalf("phase %d started at %s, before phase %d finished at %s", p, firstStart.Format(time.StampMicro), p-1, lastDone.Format(time.StampMicro))
		}
	}
	advanced := 0
	for _, e := range o.events(ctx, client.EventFilter{Kind: "task", Task: task.ID}) {
		if e.Action == "phase_advanced" {
			advanced++
		}
	}
	if advanced != 2 {
		t.Fatalf("%d phase_advanced events, want 2", advanced)
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func TestFailingPhaseStopsTheRollout(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	ob := newObserver()
	o.fleet(ctx, "demo", 20, func(c *sim.Config) { c.FailRate = 1; c.OnEvent = ob.event })
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID,
		Policy: client.Policy{Phases: []float64{10, 50, 100}, PhaseSuccess: 100}})
	o.eventually(func() bool { return o.taskNow(ctx, task.ID).Counts[client.JobFailed] == 2 }, "the first phase's 2 jobs to fail")
	o.holds(func() (bool, string) {
		got := o.taskNow(ctx, task.ID)
		ok := got.State == client.TaskRunning && got.Phase == 1 && got.Counts[client.JobQueued] == 18 && ob.count(device.EventUpgrade, "") == 2
		return ok, fmt.Sprintf("task %s in phase %d with counts %v, %d devices told to upgrade", got.State, got.Phase, got.Counts, ob.count(device.EventUpgrade, ""))
	}, "after its first phase failed the task must stay in phase 1 with 18 jobs queued")

	if _, err := o.api.CancelTask(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	done, jobs := o.settled(ctx, task.ID)
	if done.State != client.TaskCancelled || done.Counts[client.JobFailed] != 2 || done.Counts[client.JobCancelled] != 18 {
		t.Fatalf("after cancel: task %s counts %v, want cancelled with 2 failed and 18 cancelled", done.State, done.Counts)
	}
	for _, j := range jobs {
		if j.Phase > 1 && (j.StartedAt != nil || j.State != client.JobCancelled) {
			t.Fatalf("job of %s in phase %d is %s started %v: later phases must never start", j.Device, j.Phase, j.State, j.StartedAt)
		}
	}
}

func TestManualPhaseGateWaitsForAdvance(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	o.fleet(ctx, "demo", 20, nil)
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID,
		Policy: client.Policy{Phases: []float64{10, 50, 100}, PhaseGate: "manual"}})

	for i, succeeded := range []int64{2, 10} {
		phase := i + 1 // phases are numbered from 1
		o.eventually(func() bool { return o.taskNow(ctx, task.ID).Counts[client.JobSucceeded] == succeeded },
			fmt.Sprintf("phase %d's jobs to succeed", phase))
		o.holds(func() (bool, string) {
			got := o.taskNow(ctx, task.ID)
			ok := got.State == client.TaskRunning && got.Phase == phase && got.Counts[client.JobQueued] == 20-succeeded
			return ok, fmt.Sprintf("task %s in phase %d with counts %v", got.State, got.Phase, got.Counts)
		}, fmt.Sprintf("a manual gate must hold the task in phase %d until an operator advances it", phase))
		advanced, err := o.api.AdvanceTask(ctx, task.ID)
		if err != nil || advanced.Phase != phase+1 {
			t.Fatalf("advance from phase %d: %+v, %v", phase, advanced, err)
		}
	}
	done := o.waitTask(ctx, task.ID, client.TaskCompleted)
	if done.Counts[client.JobSucceeded] != 20 {
		t.Fatalf("counts %v, want 20 succeeded", done.Counts)
	}
	var ae *client.Error
	if _, err := o.api.AdvanceTask(ctx, task.ID); !errors.As(err, &ae) || ae.Status != 409 {
		t.Fatalf("advance past the last phase: %v, want a 409 conflict", err)
	}
}

func TestRetriesThenSuccess(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	retry := client.Policy{Retries: 2, RetryBackoff: client.Duration(300 * time.Millisecond)}

	// Each device of "demo" fails its first install, then succeeds; each of
	// "stubborn" fails three times, more than the two retries allow.
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	fleet := o.fleet(ctx, "demo", 10, func(c *sim.Config) { c.FailFirst = 1 })
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Policy: retry})
	fw2, _ := o.firmware("stubborn", "1.1.0", 4096)
	stubborn := o.fleet(ctx, "stubborn", 5, func(c *sim.Config) { c.FailFirst = 3 })
	task2 := o.create(ctx, client.TaskCreate{FirmwareID: fw2.ID, Policy: retry})

	o.waitTask(ctx, task.ID, client.TaskCompleted)
	done, jobs := o.settled(ctx, task.ID)
	if done.Counts[client.JobSucceeded] != 10 {
		t.Fatalf("counts %v, want 10 succeeded after one retry each", done.Counts)
	}
	for _, j := range jobs {
		if j.Attempt != 2 {
			t.Fatalf("job of %s succeeded at attempt %d, want 2 (the first retry)", j.Device, j.Attempt)
		}
	}
	if st := fleet.Stats(); st.Installs != 20 || st.Failed != 10 || st.Versions["1.1.0"] != 10 {
		t.Fatalf("fleet %+v: want 20 installs, 10 failed, 10 devices on 1.1.0", st)
	}
	// Each job failed once, was scheduled again, and started again no
	// sooner than the backoff.
	failedAt, restartedAt := map[int64]time.Time{}, map[int64]time.Time{}
	retried := 0
	for _, e := range o.events(ctx, client.EventFilter{Kind: "job", Task: task.ID}) { // newest first
		switch e.Action {
		case "retry_scheduled":
			retried++
			failedAt[e.JobID] = e.At
		case string(client.JobNotified):
			restartedAt[e.JobID] = latest(restartedAt[e.JobID], e.At)
		}
	}
	if retried != 10 {
		t.Fatalf("%d retry_scheduled events, want 10", retried)
	}
	for id, at := range failedAt {
		if wait := restartedAt[id].Sub(at); wait < time.Duration(retry.RetryBackoff) {
			t.Fatalf("job %d started again %s after its failure, before the retry backoff of %s", id, wait, time.Duration(retry.RetryBackoff))
		}
	}

	o.waitTask(ctx, task2.ID, client.TaskCompleted)
	done2, jobs2 := o.settled(ctx, task2.ID)
	if done2.Counts[client.JobFailed] != 5 {
		t.Fatalf("counts %v, want 5 failed once the retries ran out", done2.Counts)
	}
	for _, j := range jobs2 {
		if j.Attempt != 3 || j.Code != wire.FailInstall {
			t.Fatalf("job of %s: attempt %d code %q, want attempt 3 (two retries) with %s", j.Device, j.Attempt, j.Code, wire.FailInstall)
		}
	}
	if st := stubborn.Stats(); st.Installs != 15 || st.Versions["1.0.0"] != 5 {
		t.Fatalf("fleet %+v: want 15 installs (3 per device) and every device still on 1.0.0", st)
	}
}

func TestTimeouts(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	// Installing takes 4 s; the job timeout is 1 s.
	slow := func(c *sim.Config) { c.InstallTime = 4 * time.Second }
	timeout := client.Duration(time.Second)

	fw, _ := o.firmware("demo", "1.1.0", 4096)
	o.fleet(ctx, "demo", 5, slow)
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Policy: client.Policy{Timeout: timeout}})
	// With retries, the job is retried after its timeout; the device,
	// still busy, finishes its first install and reports the new version,
	// which settles the retried job.
	fw2, _ := o.firmware("retried", "1.1.0", 4096)
	o.fleet(ctx, "retried", 5, slow)
	task2 := o.create(ctx, client.TaskCreate{FirmwareID: fw2.ID,
		Policy: client.Policy{Timeout: timeout, Retries: 5, RetryBackoff: client.Duration(100 * time.Millisecond)}})

	o.waitTask(ctx, task.ID, client.TaskCompleted)
	done, jobs := o.settled(ctx, task.ID)
	if done.Counts[client.JobTimedOut] != 5 {
		t.Fatalf("counts %v, want 5 timed out", done.Counts)
	}
	for _, j := range jobs {
		if j.Code != "timed_out" || j.Attempt != 1 {
			t.Fatalf("job of %s: code %q attempt %d, want timed_out at attempt 1", j.Device, j.Code, j.Attempt)
		}
	}

	o.waitTask(ctx, task2.ID, client.TaskCompleted)
	done2, jobs2 := o.settled(ctx, task2.ID)
	if done2.Counts[client.JobSucceeded] != 5 {
		t.Fatalf("counts %v, want 5 succeeded", done2.Counts)
	}
	timedOut := map[string]bool{}
	for _, e := range o.events(ctx, client.EventFilter{Kind: "job", Task: task2.ID}) {
		if e.Action == "timed_out" {
			timedOut[e.Device] = true
		}
	}
	for _, j := range jobs2 {
		if j.Attempt < 2 || !timedOut[j.Device] {
			t.Fatalf("job of %s: attempt %d, timed out before: %v; want a timeout then a retry", j.Device, j.Attempt, timedOut[j.Device])
		}
	}
}

func TestAbortThreshold(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	ob := newObserver()
	fleet := o.fleet(ctx, "demo", 20, func(c *sim.Config) { c.FailRate = 1; c.OnEvent = ob.event })
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID,
		Policy: client.Policy{MaxConcurrent: 2, AbortFailure: 50, AbortMin: 3}})
	aborted := o.waitTask(ctx, task.ID, client.TaskAborted)
	done, jobs := o.settled(ctx, task.ID)

	failed, cancelled := done.Counts[client.JobFailed], done.Counts[client.JobCancelled]
	if failed < 3 || failed > 3+2 || failed+cancelled != 20 {
		t.Fatalf("counts %v: want at least 3 failed (abort_min), no more than 2 beyond (in flight at the abort), the rest cancelled", done.Counts)
	}
	if !strings.Contains(aborted.Reason, "abort threshold") {
		t.Fatalf("reason %q does not say the abort threshold was reached", aborted.Reason)
	}
	// Failed jobs are devices that failed; jobs cancelled before they
	// started never reached their device.
	for _, j := range jobs {
		switch {
		case j.State == client.JobFailed && ob.count(device.EventFailed, j.Device) != 1:
			t.Fatalf("job of %s failed, but the device reported %d failures", j.Device, ob.count(device.EventFailed, j.Device))
		case j.State == client.JobCancelled && j.Code != "task_aborted":
			t.Fatalf("cancelled job of %s has code %q, want task_aborted", j.Device, j.Code)
		case j.State == client.JobCancelled && j.StartedAt == nil && ob.count(device.EventUpgrade, j.Device) != 0:
			t.Fatalf("job of %s was cancelled before it started, yet the device received its command", j.Device)
		}
	}
	if st := fleet.Stats(); st.Installs > failed+2 {
		t.Fatalf("devices installed %d times; %d jobs failed and at most 2 more were in flight", st.Installs, failed)
	}
}

func TestPauseResumeCancel(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	ob := newObserver()
	// Devices hold each upgrade at its confirmation until the test lets
	// one through: jobs stay notified, not yet installing, as long as needed.
	release := make(chan struct{}, 20)
	o.fleet(ctx, "demo", 12, func(c *sim.Config) {
		c.OnEvent = ob.event
		c.Confirm = func(ctx context.Context, _ string, _ wire.Upgrade) bool {
			select {
			case <-release:
				return true
			case <-ctx.Done():
				return false
			}
		}
	})
	let := func(n int) {
		for range n {
			release <- struct{}{}
		}
	}
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Policy: client.Policy{MaxConcurrent: 3, Confirm: "download"}})
	counts := func(succeeded, flying, queued int64) func() bool {
		return func() bool {
			got := o.taskNow(ctx, task.ID)
			return got.Counts[client.JobSucceeded] == succeeded && inFlight(got) == flying && got.Counts[client.JobQueued] == queued
		}
	}
	o.eventually(counts(0, 3, 9), "3 jobs in flight, 9 queued")

	// Paused: the 3 running jobs finish, nothing new starts.
	if paused, err := o.api.PauseTask(ctx, task.ID); err != nil || paused.State != client.TaskPaused {
		t.Fatalf("pause: %+v, %v", paused, err)
	}
	let(3)
	o.eventually(counts(3, 0, 9), "the 3 running jobs to finish while paused")
	o.holds(func() (bool, string) {
		got := o.taskNow(ctx, task.ID)
		return counts(3, 0, 9)() && ob.count(device.EventUpgrade, "") == 3, fmt.Sprintf("counts %v, %d devices told to upgrade", got.Counts, ob.count(device.EventUpgrade, ""))
	}, "a paused task must start no job")

	// Resumed: jobs start again; 2 more finish and their slots refill.
	if resumed, err := o.api.ResumeTask(ctx, task.ID); err != nil || resumed.State != client.TaskRunning {
		t.Fatalf("resume: %+v, %v", resumed, err)
	}
	o.eventually(counts(3, 3, 6), "3 jobs in flight again after resume")
	let(2)
	o.eventually(counts(5, 3, 4), "5 succeeded, 3 in flight, 4 queued")
	o.eventually(func() bool { return ob.count(device.EventUpgrade, "") == 8 }, "8 devices to have received their command")

	// Cancelled: queued jobs are cancelled and the 3 devices waiting at
	// their confirmation are told the upgrade is withdrawn.
	var waiting []string
	for _, j := range o.jobs(ctx, task.ID) {
		if j.State == client.JobNotified {
			waiting = append(waiting, j.Device)
		}
	}
	if len(waiting) != 3 {
		t.Fatalf("%d notified jobs (%v), want 3", len(waiting), waiting)
	}
	if cancelled, err := o.api.CancelTask(ctx, task.ID); err != nil || cancelled.State != client.TaskCancelled {
		t.Fatalf("cancel: %+v, %v", cancelled, err)
	}
	done, jobs := o.settled(ctx, task.ID)
	if done.Counts[client.JobSucceeded] != 5 || done.Counts[client.JobCancelled] != 7 {
		t.Fatalf("counts %v, want 5 succeeded and 7 cancelled", done.Counts)
	}
	o.eventually(func() bool { return ob.count(device.EventCancelled, "") == 3 }, "the 3 waiting devices to hear the cancel")
	slices.Sort(waiting)
	if got := ob.devices(device.EventCancelled); !slices.Equal(got, waiting) {
		t.Fatalf("devices that heard the cancel: %v, want those whose job was notified: %v", got, waiting)
	}
	for _, j := range jobs {
		if j.State == client.JobCancelled && j.Code != "task_cancelled" {
			t.Fatalf("cancelled job of %s has code %q, want task_cancelled", j.Device, j.Code)
		}
	}
	if n := ob.count(device.EventUpgrade, ""); n != 8 {
		t.Fatalf("%d devices received a command, want 8 (5 succeeded, 3 withdrawn)", n)
	}
}

func TestVerificationGateOnTheServer(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	if _, err := o.api.CreateProduct(ctx, client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	image := []byte(strings.Repeat("verify me ", 400))
	fw, err := o.api.UploadFirmware(ctx, client.FirmwareUpload{Product: "demo", Version: "1.1.0", VerifyRequired: true}, strings.NewReader(string(image)))
	if err != nil {
		t.Fatal(err)
	}
	o.fleet(ctx, "demo", 8, nil)
	// One device that fails every install, started beside the fleet.
	key, err := o.api.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(ctx, sim.Config{API: o.api, Broker: o.srv.MQTTURL(), PublicKey: key.PublicKey,
		Product: "demo", Devices: 1, Prefix: "bad-", Version: "1.0.0", FailRate: 1}); err != nil {
		t.Fatal(err)
	}
	o.eventually(func() bool {
		d, err := o.api.Device(ctx, "demo", "bad-00001")
		return err == nil && d.Versions["default"] == "1.0.0"
	}, "the failing device to report its version")
	batch := client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush,
		Target: client.Target{Devices: []string{"sim-00003", "sim-00004", "sim-00005", "sim-00006", "sim-00007", "sim-00008"}}}
	refused := func(when string) {
		t.Helper()
		var ae *client.Error
		_, err := o.api.CreateTask(ctx, batch)
		if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Detail, "verif") {
			t.Fatalf("batch task %s: %v, want 409 saying the firmware must be verified", when, err)
		}
	}
	refused("before any verification")

	// A verification task with a failed job does not release the firmware.
	failed := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Verification: true, Target: client.Target{Devices: []string{"bad-00001"}}})
	o.waitTask(ctx, failed.ID, client.TaskCompleted)
	refused("after a verification task whose job failed")

	verify := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Verification: true, Target: client.Target{Devices: []string{"sim-00001", "sim-00002"}}})
	o.waitTask(ctx, verify.ID, client.TaskCompleted)
	got, err := o.api.Firmware(ctx, fw.ID)
	if err != nil || got.VerifiedBy != verify.ID {
		t.Fatalf("firmware after its verification task: %+v, %v; want verified by task %d", got, err, verify.ID)
	}
	task := o.create(ctx, batch)
	done := o.waitTask(ctx, task.ID, client.TaskCompleted)
	if done.Counts[client.JobSucceeded] != 6 {
		t.Fatalf("batch task counts %v, want 6 succeeded", done.Counts)
	}
}

func TestRequestModeBatch(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	ob := newObserver()
	fleet := o.fleet(ctx, "demo", 30, func(c *sim.Config) {
		c.RequestEvery = 200 * time.Millisecond
		c.InstallTime = 200 * time.Millisecond
		c.OnEvent = ob.event
	})
	beta := map[string]bool{}
	for i := 1; i <= 30; i += 2 {
		key := fmt.Sprintf("sim-%05d", i)
		beta[key] = true
		if _, err := o.api.SetDeviceTags(ctx, "demo", key, map[string]string{"ring": "beta"}); err != nil {
			t.Fatal(err)
		}
	}
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModeRequest,
		Target: client.Target{Tags: map[string]string{"ring": "beta"}}, Policy: client.Policy{MaxConcurrent: 4}})
	if task.Total != 15 {
		t.Fatalf("request task on ring=beta has %d jobs, want 15", task.Total)
	}
	stop := o.sampleInFlight(ctx, task.ID)
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	serverPeak := stop()
	done, _ := o.settled(ctx, task.ID)
	if done.Counts[client.JobSucceeded] != 15 {
		t.Fatalf("counts %v, want 15 succeeded", done.Counts)
	}
	if serverPeak > 4 || ob.maxInFlight() > 4 {
		t.Fatalf("in flight at once: %d (task counts), %d (devices); the cap is 4", serverPeak, ob.maxInFlight())
	}
	o.eventually(func() bool { return fleet.Stats().Versions["1.1.0"] == 15 }, "15 devices on 1.1.0")
	for d, err := range o.api.AllDevices(ctx, client.DeviceFilter{Product: "demo"}, client.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		want := "1.0.0"
		if beta[d.Key] {
			want = "1.1.0"
		}
		if d.Versions["default"] != want {
			t.Fatalf("device %s (tags %v) runs %s, want %s", d.Key, d.Tags, d.Versions["default"], want)
		}
	}
}
