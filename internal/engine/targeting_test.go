package engine_test

import (
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// unreported registers devices that have never reported a version.
func (f *fixture) unreported(keys ...string) {
	f.t.Helper()
	var nd []store.NewDevice
	for _, k := range keys {
		nd = append(nd, store.NewDevice{Product: "demo", Key: k, SecretHash: []byte("x")})
	}
	created, err := f.st.CreateDevices(f.ctx, nd)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, d := range created {
		f.devs[d.Key] = engine.Device{ID: d.ID, Product: d.Product, Key: d.Key}
	}
}

func TestUnreportedDeviceWaitsForItsVersionInRequestMode(t *testing.T) {
	f := newFixture(t, 0)
	f.unreported("n1", "n2")
	task := f.task(ota.TaskSpec{Mode: ota.ModeRequest, Target: ota.Target{All: true}})
	f.waitTask(task.ID, ota.TaskRunning)
	ask := func(key, version string) *engine.Answer {
		t.Helper()
		a, err := f.e.Request(f.ctx, f.devs[key], wire.Request{Module: "default", Version: version})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if a := ask("n1", ""); a == nil || a.Kind != wire.KindReply || !strings.Contains(a.Message.(wire.Reply).Message, "report the version") {
		t.Fatalf("request without a version from a device that never reported: %+v; want no_upgrade asking for its version", a)
	}
	if a := ask("n1", "1.0.0"); a == nil || a.Kind != wire.KindUpgrade {
		t.Fatalf("request with version 1.0.0: %+v; want an offer", a)
	}
	if a := ask("n2", "1.1.0"); a == nil || a.Kind != wire.KindReply {
		t.Fatalf("request from a device already on the target: %+v; want no_upgrade", a)
	}
	jobs := f.jobs(task.ID)
	if jobs["n1"].State != ota.JobOffered || jobs["n2"].State != ota.JobSucceeded {
		t.Fatalf("jobs n1 %s, n2 %s; want offered and succeeded", jobs["n1"].State, jobs["n2"].State)
	}
	f.checkCounts(task.ID)
}

func TestRetryFailedNeverTargetsADeviceOnTheTarget(t *testing.T) {
	f := newFixture(t, 2)
	f.connect("d1", "d2")
	task := f.task(ota.TaskSpec{Target: ota.Target{All: true}, Policy: ota.Policy{Timeout: ota.Duration(time.Minute)}})
	f.upgradeOf("d1")
	f.upgradeOf("d2")
	f.clock.Add(2 * time.Minute)
	f.waitTask(task.ID, ota.TaskCompleted)
	// d1's version was stored while its job stayed timed out (as before
	// late successes were recorded): the retry must not send it again.
	if _, err := f.st.Apply(f.ctx, ota.ChangeSet{Versions: []ota.VersionReport{
		{DeviceID: f.devs["d1"].ID, Module: "default", Version: "1.1.0", At: f.clock.Now()}}}); err != nil {
		t.Fatal(err)
	}
	before1, before2 := len(f.down.Upgrades("d1")), len(f.down.Upgrades("d2"))
	_, n, err := f.e.RetryFailed(f.ctx, task.ID)
	if err != nil || n != 1 {
		t.Fatalf("retry-failed requeued %d (%v), want 1: d2 only", n, err)
	}
	f.eventually(func() bool { return len(f.down.Upgrades("d2")) > before2 }, "the retry of d2")
	jobs := f.jobs(task.ID)
	if jobs["d1"].State != ota.JobSucceeded || len(f.down.Upgrades("d1")) != before1 {
		t.Fatalf("d1: job %s, %d commands after %d; want succeeded and no command sent again", jobs["d1"].State, len(f.down.Upgrades("d1")), before1)
	}
	f.checkCounts(task.ID)
}

func TestFailedDeviceDoesNotRejoinItsDynamicTask(t *testing.T) {
	f := newFixture(t, 1)
	f.connect("d1")
	task := f.task(ota.TaskSpec{Target: ota.Target{All: true, Dynamic: true}})
	u := f.upgradeOf("d1")
	for _, s := range []wire.State{wire.StateDownloading, wire.StateDownloaded, wire.StateInstalling, wire.StateRebooting} {
		f.progress("d1", u, s, 100)
	}
	f.inform("d1", "1.0.0") // rolled back: the job fails, the device matches again
	f.inform("d1", "1.0.0")
	got, err := f.st.GetTask(f.ctx, task.ID)
	if err != nil || got.Total != 1 || got.Counts[ota.JobFailed] != 1 {
		t.Fatalf("dynamic task after a rollback: total %d counts %v (%v); want the one failed job, no new one", got.Total, got.Counts, err)
	}
	if sent := f.down.Upgrades("d1"); len(sent) != 1 {
		t.Fatalf("d1 was sent %d commands, want 1", len(sent))
	}
}

func TestReportStoredBeforeTheJobSettlesItAtStart(t *testing.T) {
	f := newFixture(t, 0)
	f.unreported("n1", "n2")
	task := f.task(ota.TaskSpec{Target: ota.Target{All: true}})
	// The devices' versions were stored without the engine seeing them
	// against the jobs (between the reading of the targets and the storing
	// of the jobs, or before a crash): the next start settles the jobs.
	if _, err := f.st.Apply(f.ctx, ota.ChangeSet{Versions: []ota.VersionReport{
		{DeviceID: f.devs["n1"].ID, Module: "default", Version: "1.0.0", At: f.clock.Now()},
		{DeviceID: f.devs["n2"].ID, Module: "default", Version: "3.0.0", At: f.clock.Now()}}}); err != nil {
		t.Fatal(err)
	}
	f.restart()
	f.connect("n1")
	f.upgrade("n1")
	done := f.waitTask(task.ID, ota.TaskCompleted)
	jobs := f.jobs(task.ID)
	if done.Counts[ota.JobSucceeded] != 1 || jobs["n2"].Code != ota.CodeVersionNotEligible {
		t.Fatalf("counts %v, n2 %s/%s; want n1 succeeded and n2 cancelled as version_not_eligible", done.Counts, jobs["n2"].State, jobs["n2"].Code)
	}
	f.checkCounts(task.ID)
}
