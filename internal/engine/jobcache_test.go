package engine_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/engine/enginetest"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// readCounter counts the devices whose active jobs the engine reads from
// the store.
type readCounter struct {
	store.Store
	devices atomic.Int64
}

func (s *readCounter) ActiveJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error) {
	s.devices.Add(int64(len(deviceIDs)))
	return s.Store.ActiveJobs(ctx, deviceIDs)
}

// A task's creation adds its jobs to the devices the engine holds in its
// job cache (the store fills them as stored): devices heard before ask for
// their upgrade and go through it without their active jobs being read
// again, and the jobs end as the store has them.
func TestTaskCreationAddsItsJobsToTheCache(t *testing.T) {
	f := newFixture(t, 2)
	f.stop()
	reads := &readCounter{Store: f.st}
	f.e, f.stop = enginetest.Start(t, engine.Config{Store: reads, Downlink: f.down, Commands: commandKey, Now: f.clock.Now,
		Logger: slog.New(failOnError{t})})
	f.connect("d1", "d2")
	f.inform("d1", "1.0.0")
	f.inform("d2", "1.0.0")
	// The creation reads the devices' active jobs from the store itself
	// (the busy devices); what counts is what the devices' messages read
	// after it.
	task := f.task(ota.TaskSpec{Mode: ota.ModeRequest, Target: ota.Target{Devices: []string{"d1", "d2"}}})
	f.waitTask(task.ID, ota.TaskRunning)
	before := reads.devices.Load()
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
	if n := reads.devices.Load() - before; n != 0 {
		t.Errorf("the engine read the active jobs of %d devices after the task's creation, want none (cached)", n)
	}
}
