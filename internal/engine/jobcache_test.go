package engine_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/engine/enginetest"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// activeReads is a store that records the devices whose active jobs the
// engine reads.
type activeReads struct {
	store.Store
	mu   sync.Mutex
	read []int64
}

func (s *activeReads) ActiveJobs(ctx context.Context, ids []int64) ([]ota.Job, error) {
	s.mu.Lock()
	s.read = append(s.read, ids...)
	s.mu.Unlock()
	return s.Store.ActiveJobs(ctx, ids)
}

// countActiveReads restarts the fixture's engine on a store that records
// the devices whose active jobs it reads.
func (f *fixture) countActiveReads() *activeReads {
	f.t.Helper()
	f.stop()
	reads := &activeReads{Store: f.st}
	f.e, f.stop = enginetest.Start(f.t, engine.Config{Store: reads, Downlink: f.down, Commands: commandKey, Now: f.clock.Now,
		Logger: slog.New(failOnError{f.t})})
	return reads
}

func (s *activeReads) take() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.read
	s.read = nil
	return r
}

// A task's creation keeps the active jobs the loop holds for the devices
// it heard and adds each one's new job as the store wrote it: the
// devices' messages in the upgrade read no jobs, and a job the device had
// before the task (of another module) is still known and settled by the
// device's report.
func TestDevicesHeardBeforeATaskKeepTheirJobsCached(t *testing.T) {
	f := newFixture(t, 3)
	reads := f.countActiveReads()

	// A job of another module that waits for the devices' first report of
	// it, then the task of the fixture's module.
	other := signed(ota.Firmware{Product: "demo", Module: "other", Version: "2.0.0", Size: 3, SHA256: sha, BlobKey: "k2"})
	if err := f.st.CreateFirmware(f.ctx, &other); err != nil {
		t.Fatal(err)
	}
	first := f.task(ota.TaskSpec{FirmwareID: other.ID, Target: ota.Target{Devices: []string{"d1", "d2"}}})
	f.connect("d1", "d2")
	if got := reads.take(); len(got) == 0 {
		t.Fatal("the devices' connects read no active jobs: the test no longer sees the cache fill")
	}
	task := f.task(ota.TaskSpec{Target: ota.Target{Devices: []string{"d1", "d2", "d3"}}})
	reads.take() // the creation's own read of its candidates' jobs
	f.upgrade("d1")
	f.upgrade("d2")
	if got := reads.take(); slices.Contains(got, f.devs["d1"].ID) || slices.Contains(got, f.devs["d2"].ID) {
		t.Errorf("after the task's creation the engine read the active jobs of %v; d1 (%d) and d2 (%d) were held",
			got, f.devs["d1"].ID, f.devs["d2"].ID)
	}
	f.connect("d3") // not heard before the task: read, as before
	f.upgrade("d3")
	if got := reads.take(); !slices.Contains(got, f.devs["d3"].ID) {
		t.Errorf("d3's active jobs were not read (reads %v): it was not heard before the task", got)
	}
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 3 {
		t.Fatalf("counts %v, want 3 succeeded", done.Counts)
	}
	f.checkCounts(task.ID)

	// The first task's jobs were held beside the new ones: the devices'
	// reports of the other module settle them.
	for _, k := range []string{"d1", "d2"} {
		if _, err := f.e.Inform(f.ctx, f.devs[k], wire.Inform{Modules: map[string]string{"default": "1.1.0", "other": "2.0.0"}}); err != nil {
			t.Fatal(err)
		}
	}
	done = f.waitTask(first.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 2 {
		t.Fatalf("first task's counts %v, want 2 succeeded", done.Counts)
	}
	f.checkCounts(first.ID)
}

// existenceReads also records the devices whose existence the engine
// reads.
type existenceReads struct {
	*activeReads
}

func (s existenceReads) ExistingDevices(ctx context.Context, ids []int64) (map[int64]bool, error) {
	s.mu.Lock()
	s.read = append(s.read, ids...)
	s.mu.Unlock()
	return s.Store.ExistingDevices(ctx, ids)
}

// Devices connected before the loop last heard them (here: before a
// restart, as when a fleet takes longer than SeenEvery to connect) are
// held too, from the store's online flag: their messages in the upgrade
// read neither their jobs nor whether they exist.
func TestOnlineDevicesKeepTheirJobsCachedThroughATask(t *testing.T) {
	f := newFixture(t, 3)
	f.connect("d1", "d2")
	f.stop()
	reads := existenceReads{&activeReads{Store: f.st}}
	f.e, f.stop = enginetest.Start(t, engine.Config{Store: reads, Downlink: f.down, Commands: commandKey, Now: f.clock.Now,
		Logger: slog.New(failOnError{t})})
	task := f.task(ota.TaskSpec{Target: ota.Target{Devices: []string{"d1", "d2", "d3"}}})
	reads.take() // the creation's own reads
	f.upgrade("d1")
	f.upgrade("d2")
	if got := reads.take(); slices.Contains(got, f.devs["d1"].ID) || slices.Contains(got, f.devs["d2"].ID) {
		t.Errorf("after the task's creation the engine read %v; d1 (%d) and d2 (%d) are online and were held",
			got, f.devs["d1"].ID, f.devs["d2"].ID)
	}
	f.connect("d3")
	f.upgrade("d3")
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 3 {
		t.Fatalf("counts %v, want 3 succeeded", done.Counts)
	}
	f.checkCounts(task.ID)
}

// A task's creation adds its jobs to the devices the engine holds in its
// job cache (the store fills them as stored): devices heard before ask for
// their upgrade and go through it without their active jobs being read
// again, and the jobs end as the store has them.
func TestTaskCreationAddsItsJobsToTheCache(t *testing.T) {
	f := newFixture(t, 2)
	reads := f.countActiveReads()
	f.connect("d1", "d2")
	f.inform("d1", "1.0.0")
	f.inform("d2", "1.0.0")
	// The creation reads the devices' active jobs from the store itself
	// (the busy devices); what counts is what the devices' messages read
	// after it.
	task := f.task(ota.TaskSpec{Mode: ota.ModeRequest, Target: ota.Target{Devices: []string{"d1", "d2"}}})
	f.waitTask(task.ID, ota.TaskRunning)
	reads.take()
	for _, d := range []string{"d1", "d2"} {
		var offer wire.Upgrade
		f.eventually(func() bool {
			a, err := f.e.Request(f.ctx, f.devs[d], wire.Request{Module: "default"})
			if err != nil {
				t.Fatal(err)
			}
			u, ok := a.Message.(wire.Upgrade)
			offer = u
			return ok
		}, "an offer for "+d)
		if _, err := f.e.Confirm(f.ctx, f.devs[d], wire.Confirm{Job: offer.Job, Accept: true}); err != nil {
			t.Fatal(err)
		}
		for _, s := range []wire.State{wire.StateDownloading, wire.StateDownloaded, wire.StateInstalling, wire.StateRebooting} {
			f.progress(d, offer, s, 100)
		}
		f.inform(d, "1.1.0")
	}
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 2 {
		t.Fatalf("counts %v, want 2 succeeded", done.Counts)
	}
	f.checkCounts(task.ID)
	if n := len(reads.take()); n != 0 {
		t.Errorf("the engine read the active jobs of %d devices after the task's creation, want none (cached)", n)
	}
}
