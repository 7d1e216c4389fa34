package engine_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

func TestDeletingADeviceCancelsItsJobsAndTheTaskCompletes(t *testing.T) {
	f := newFixture(t, 3)
	f.connect("d1", "d3") // d2 stays offline: its job stays queued
	task := f.task(ota.TaskSpec{Target: ota.Target{Devices: []string{"d1", "d2", "d3"}}})
	f.upgradeOf("d3") // d3's job is in flight
	for _, k := range []string{"d2", "d3"} {
		if err := f.e.DeleteDevice(ota.WithActor(f.ctx, "token:ops"), "demo", k); err != nil {
			t.Fatalf("delete %s: %v", k, err)
		}
	}
	f.upgrade("d1")
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 1 || done.Counts[ota.JobCancelled] != 2 {
		t.Fatalf("counts %v, want 1 succeeded and 2 cancelled", done.Counts)
	}
	f.checkCounts(task.ID)
	f.restart()
	jobs := f.jobs(task.ID)
	for _, k := range []string{"d2", "d3"} {
		if j := jobs[k]; j.State != ota.JobCancelled || j.Code != ota.CodeDeviceDeleted {
			t.Errorf("%s's job after a restart: %s %q, want cancelled device_deleted", k, j.State, j.Code)
		}
		if _, err := f.st.GetDevice(f.ctx, "demo", k); ota.ErrorCode(err) != ota.ENOTFOUND {
			t.Errorf("%s still exists: %v", k, err)
		}
	}
	if got, _ := f.st.GetTask(f.ctx, task.ID); got.State != ota.TaskCompleted {
		t.Errorf("task after a restart is %s", got.State)
	}
	events, _, err := f.st.ListEvents(f.ctx, store.EventFilter{Kind: ota.KindDevice, Device: "d2"}, store.Page{})
	if err != nil || len(events) == 0 || events[0].Action != "deleted" || events[0].Actor != "token:ops" {
		t.Errorf("device events of d2: %+v, %v; want the last one deleted by token:ops", events, err)
	}
	if err := f.e.DeleteDevice(f.ctx, "demo", "d2"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Errorf("deleting d2 again: %v, want not found", err)
	}
}

// A device deleted without its jobs (by a version before deletion went
// through the engine) leaves jobs that would wait forever: the engine
// cancels them when it starts.
func TestJobsOfDevicesDeletedBehindTheEngineAreCancelledAtStart(t *testing.T) {
	f := newFixture(t, 2)
	f.connect("d1")
	task := f.task(ota.TaskSpec{Target: ota.Target{Devices: []string{"d1", "d2"}}})
	if err := f.st.DeleteDevice(f.ctx, "demo", "d2"); err != nil {
		t.Fatal(err)
	}
	f.upgrade("d1")
	f.restart()
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobCancelled] != 1 || f.jobs(task.ID)["d2"].Code != ota.CodeDeviceDeleted {
		t.Fatalf("counts %v, d2's job %+v: want it cancelled as device_deleted", done.Counts, f.jobs(task.ID)["d2"])
	}
	f.checkCounts(task.ID)
}

func TestMessagesOfADeletedDeviceAreRefusedAsUnauthorized(t *testing.T) {
	f := newFixture(t, 2)
	if err := f.e.DeleteDevice(f.ctx, "demo", "d2"); err != nil {
		t.Fatal(err)
	}
	_, err := f.e.Inform(f.ctx, f.devs["d2"], wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	if we, ok := err.(*wire.Error); !ok || we.Code != wire.CodeUnauthorized {
		t.Fatalf("inform of a deleted device: %v, want unauthorized", err)
	}
	f.inform("d1", "1.0.1") // the engine goes on
}

// TestLastSeenIsHeldWithinSeenEvery: messages within DefaultSeenEvery of
// the last write are held, not written, and written by the next tick once
// that time has passed, so the stored last_seen is never staler than that.
func TestLastSeenIsHeldWithinSeenEvery(t *testing.T) {
	f := newFixture(t, 1)
	d := f.devs["d1"]
	stored := func() time.Time {
		dev, err := f.st.GetDevice(f.ctx, "demo", "d1")
		if err != nil || dev.LastSeen == nil {
			t.Fatalf("d1: %+v, %v", dev, err)
		}
		return *dev.LastSeen
	}
	t0 := f.clock.Now()
	f.connect("d1")
	f.clock.Add(time.Second)
	f.inform("d1", "1.0.0")
	f.clock.Add(2 * time.Second)
	if _, err := f.e.Poll(f.ctx, d); err != nil {
		t.Fatal(err)
	}
	held := f.clock.Now()
	if got := stored(); !got.Equal(t0) {
		t.Fatalf("last_seen %v within %s of the connect, want the connect's %v (the messages held)", got, engine.DefaultSeenEvery, t0)
	}
	f.clock.Add(engine.DefaultSeenEvery)
	f.eventually(func() bool { return stored().Equal(held) }, "a tick to write the held last_seen")

	f.clock.Add(time.Second) // DefaultSeenEvery + 1 s after the last write
	f.inform("d1", "1.0.0")
	if got := stored(); !got.Equal(f.clock.Now()) {
		t.Fatalf("last_seen %v, want %v: the last write is %s old", got, f.clock.Now(), engine.DefaultSeenEvery+time.Second)
	}
}

// TestEveryDeviceMessageMovesLastSeen: with DefaultSeenEvery between them,
// every kind of message moves last_seen at once.
func TestEveryDeviceMessageMovesLastSeen(t *testing.T) {
	f := newFixture(t, 1)
	d := f.devs["d1"]
	f.connect("d1")
	messages := []struct {
		name string
		send func() error
	}{
		{"inform", func() error {
			_, err := f.e.Inform(f.ctx, d, wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
			return err
		}},
		{"request", func() error { _, err := f.e.Request(f.ctx, d, wire.Request{Module: "default"}); return err }},
		{"confirm", func() error { _, err := f.e.Confirm(f.ctx, d, wire.Confirm{Job: "77", Accept: true}); return err }},
		{"progress", func() error {
			_, err := f.e.Progress(f.ctx, d, wire.Progress{Job: "x7", State: wire.StateDownloading, Percent: 5})
			return err
		}},
		{"poll", func() error { _, err := f.e.Poll(f.ctx, d); return err }},
	}
	for _, m := range messages {
		f.clock.Add(time.Minute)
		if err := m.send(); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		dev, err := f.st.GetDevice(f.ctx, "demo", "d1")
		if err != nil {
			t.Fatal(err)
		}
		if dev.LastSeen == nil || !dev.LastSeen.Equal(f.clock.Now()) {
			t.Errorf("after %s: last_seen %v, want %v", m.name, dev.LastSeen, f.clock.Now())
		}
		if !dev.Online {
			t.Errorf("after %s: the MQTT-connected device is shown offline", m.name)
		}
	}
}

// TestTheLoopsJobCacheFollowsEveryWrite: a device whose jobs the loop
// holds from its last message hears the cancel of its task (written by
// the task's cancel, not by a device message), and takes the next task's
// job (written by the task's creation) with exact counts.
func TestTheLoopsJobCacheFollowsEveryWrite(t *testing.T) {
	f := newFixture(t, 2)
	f.connect("d1", "d2")
	first := f.task(ota.TaskSpec{Target: ota.Target{Devices: []string{"d1", "d2"}}})
	u := f.upgradeOf("d1")
	f.progress("d1", u, wire.StateDownloading, 10) // the loop now holds d1's job
	if _, err := f.e.Cancel(f.ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	f.waitTask(first.ID, ota.TaskCancelled)
	a, err := f.e.Progress(f.ctx, f.devs["d1"], wire.Progress{Job: u.Job, Attempt: u.Attempt, State: wire.StateDownloading, Percent: 20})
	if err != nil {
		t.Fatal(err)
	}
	if up, ok := a.Message.(wire.Upgrade); a == nil || !ok || !up.Cancel || up.Job != u.Job {
		t.Fatalf("progress on a cancelled job answered %+v, want the cancel of job %s", a, u.Job)
	}
	f.checkCounts(first.ID)

	second := f.task(ota.TaskSpec{Target: ota.Target{Devices: []string{"d1", "d2"}}})
	for _, k := range []string{"d1", "d2"} {
		want := strconv.FormatInt(f.jobs(second.ID)[k].ID, 10)
		var next wire.Upgrade
		f.eventually(func() bool {
			sent := f.down.Upgrades(k)
			next = sent[len(sent)-1]
			return !next.Cancel && next.Job == want
		}, "the second task's command to "+k)
		for _, s := range []wire.State{wire.StateDownloading, wire.StateDownloaded, wire.StateInstalling, wire.StateRebooting} {
			f.progress(k, next, s, 100)
		}
		f.inform(k, next.Version)
	}
	f.waitTask(second.ID, ota.TaskCompleted)
	f.checkCounts(second.ID)
	if j := f.jobs(second.ID)["d1"]; j.State != ota.JobSucceeded {
		t.Fatalf("d1's job of the second task is %s, want succeeded", j.State)
	}
}
