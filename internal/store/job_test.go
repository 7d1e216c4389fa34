package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// rollout creates a product, n devices on 1.0.0, a firmware and a task over
// all of them, and returns the task and its jobs.
func rollout(t *testing.T, s store.Store, n int) (ota.Task, []ota.Job) {
	t.Helper()
	ctx := as("op")
	must(t, s.CreateProduct(ctx, &ota.Product{Key: "demo"}))
	var nd []store.NewDevice
	for i := range n {
		nd = append(nd, store.NewDevice{Product: "demo", Key: fmt.Sprintf("d%03d", i), SecretHash: hash("s"),
			Versions: map[string]string{"default": "1.0.0"}})
	}
	devs, err := s.CreateDevices(ctx, nd)
	must(t, err)
	fw := ota.Firmware{Product: "demo", Module: "default", Version: "1.1.0", Size: 1, SHA256: fmt.Sprintf("%064d", 1), Signature: "x", BlobKey: "k"}
	must(t, s.CreateFirmware(ctx, &fw))
	task := ota.Task{Product: "demo", Module: "default", FirmwareID: fw.ID, Version: "1.1.0", Mode: ota.ModePush,
		State: ota.TaskRunning, Total: int64(n)}
	jobs := make([]ota.Job, n)
	for i, d := range devs {
		jobs[i] = ota.Job{DeviceID: d.ID, Device: d.Key, Product: "demo", Module: "default", State: ota.JobQueued,
			Phase: ota.PhaseIndex(i % 2), FromVersion: "1.0.0", Version: "1.1.0"}
	}
	must(t, s.CreateTask(ctx, &task, jobs))
	var stored []ota.Job
	for page := (store.Page{Limit: store.MaxPageSize}); ; {
		jobs, next, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, page)
		must(t, err)
		stored = append(stored, jobs...)
		if next == "" {
			return task, stored
		}
		page.After = next
	}
}

func TestApplyWritesJobsCountsAndRefusesStaleRevisions(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("engine")
		task, jobs := rollout(t, s, 1500) // more than one statement's chunk
		now := time.Now().UTC().Truncate(time.Microsecond)
		var changes []ota.JobUpdate
		for _, j := range jobs {
			n := j
			n.State, n.SentAt, n.StartedAt, n.UpdatedAt = ota.JobNotified, &now, &now, now
			changes = append(changes, ota.JobUpdate{Old: j, New: n})
		}
		conflicts, err := s.Apply(ctx, ota.ChangeSet{Jobs: changes})
		must(t, err)
		if len(conflicts) != 0 {
			t.Fatalf("%d conflicts on a first write", len(conflicts))
		}
		got, err := s.GetTask(ctx, task.ID)
		must(t, err)
		if got.Counts[ota.JobNotified] != 1500 || got.Counts[ota.JobQueued] != 0 {
			t.Fatalf("counts %v, want 1500 notified", got.Counts)
		}
		phases, err := s.TaskPhaseCounts(ctx, task.ID)
		must(t, err)
		if phases[0][ota.JobNotified] != 750 || phases[1][ota.JobNotified] != 750 {
			t.Fatalf("phase counts %v, want 750 notified in each", phases)
		}
		j, err := s.GetJob(ctx, jobs[7].ID)
		must(t, err)
		if j.State != ota.JobNotified || j.SentAt == nil || !j.SentAt.Equal(now) || j.Rev != jobs[7].Rev+1 {
			t.Fatalf("job after the write: %+v", j)
		}

		// A writer that read before that change (the old revision) loses,
		// and nothing of its change is written or counted.
		stale := changes[7]
		stale.New.State = ota.JobCancelled
		conflicts, err = s.Apply(ctx, ota.ChangeSet{Jobs: []ota.JobUpdate{stale, changes[8]}})
		must(t, err)
		if len(conflicts) != 2 || conflicts[0] != j.ID {
			t.Fatalf("conflicts %v, want both changes refused (stale revisions)", conflicts)
		}
		got, err = s.GetTask(ctx, task.ID)
		must(t, err)
		if got.Counts[ota.JobCancelled] != 0 || got.Counts[ota.JobNotified] != 1500 {
			t.Fatalf("a stale change was counted: %v", got.Counts)
		}
		if j2, _ := s.GetJob(ctx, j.ID); j2.State != ota.JobNotified || j2.Rev != j.Rev {
			t.Fatalf("a stale change was written: %+v", j2)
		}
	})
}

func TestCancelQueuedCancelsWithEventsAndCounts(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("op")
		task, _ := rollout(t, s, 40)
		cancelled, err := s.CancelQueued(ctx, ota.CancelRequest{TaskID: task.ID, Code: ota.CodeTaskCancelled, Message: "by op", Actor: "op", At: time.Now()})
		must(t, err)
		if cancelled[0][ota.JobQueued]+cancelled[1][ota.JobQueued] != 40 {
			t.Fatalf("cancelled %v, want 40", cancelled)
		}
		got, err := s.GetTask(ctx, task.ID)
		must(t, err)
		if got.Counts[ota.JobCancelled] != 40 || got.Counts[ota.JobQueued] != 0 {
			t.Fatalf("counts %v", got.Counts)
		}
		events, _, err := s.ListEvents(ctx, store.EventFilter{TaskID: task.ID, Kind: ota.KindJob}, store.Page{Limit: 100})
		must(t, err)
		if len(events) != 40 || events[0].Action != string(ota.JobCancelled) || events[0].Actor != "op" {
			t.Fatalf("%d job events, first %+v; want 40 cancellations by op", len(events), events[0])
		}
	})
}

// A task whose jobs the database refuses (a device already has an active
// job on the module) stores nothing: on SQLite the insert's conflict clause
// rolls the whole transaction back (see orRollback), and the store writes
// on as before.
func TestCreateTaskOverABusyDeviceStoresNothing(t *testing.T) {
	run(t, testCreateTaskOverABusyDeviceStoresNothing)
}

func testCreateTaskOverABusyDeviceStoresNothing(t *testing.T, s store.Store) {
	ctx := as("op")
	first, jobs := rollout(t, s, 3)
	again := ota.Task{Product: "demo", Module: "default", FirmwareID: first.FirmwareID, Version: "1.1.0", Mode: ota.ModePush,
		State: ota.TaskRunning, Total: 1}
	busy := []ota.Job{{DeviceID: jobs[1].DeviceID, Device: jobs[1].Device, Product: "demo", Module: "default",
		State: ota.JobQueued, FromVersion: "1.0.0", Version: "1.1.0"}}
	wantCode(t, s.CreateTask(ctx, &again, busy), ota.ECONFLICT)
	tasks, _, err := s.ListTasks(ctx, store.TaskFilter{}, store.Page{})
	must(t, err)
	if len(tasks) != 1 {
		t.Fatalf("%d tasks stored, want only the first", len(tasks))
	}
	// The store still writes: the first task's jobs move.
	updates := make([]ota.JobUpdate, len(jobs))
	for i, j := range jobs {
		n := j
		n.State = ota.JobNotified
		updates[i] = ota.JobUpdate{Old: j, New: n}
	}
	conflicts, err := s.Apply(ctx, ota.ChangeSet{Jobs: updates})
	must(t, err)
	if len(conflicts) != 0 {
		t.Fatalf("conflicts %v", conflicts)
	}
	got, err := s.GetTask(ctx, first.ID)
	must(t, err)
	if got.Counts[ota.JobNotified] != 3 {
		t.Fatalf("counts %v, want 3 notified", got.Counts)
	}
}

// The one-active-job rule follows a job through its end and a retry
// (the index keys on the active flag that Apply and CancelQueued keep in
// step with the state): a job that fails frees its device for another
// task, and bringing it back while that task holds the device is refused.
func TestOneActiveJobFollowsEndsAndRetries(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("engine")
		first, jobs := rollout(t, s, 2)
		j := jobs[0]
		failed := j
		failed.State, failed.Code = ota.JobFailed, "install_failed"
		conflicts, err := s.Apply(ctx, ota.ChangeSet{Jobs: []ota.JobUpdate{{Old: j, New: failed}}})
		must(t, err)
		if len(conflicts) != 0 {
			t.Fatalf("conflicts %v", conflicts)
		}
		second := ota.Task{Product: "demo", Module: "default", FirmwareID: first.FirmwareID, Version: "1.1.0", Mode: ota.ModePush,
			State: ota.TaskRunning, Total: 1}
		job := ota.Job{DeviceID: j.DeviceID, Device: j.Device, Product: "demo", Module: "default",
			State: ota.JobQueued, FromVersion: "1.0.0", Version: "1.1.0"}
		must(t, s.CreateTask(ctx, &second, []ota.Job{job}))
		stored, err := s.JobsByID(ctx, []int64{j.ID})
		must(t, err)
		if len(stored) != 1 {
			t.Fatalf("%d jobs read back, want 1", len(stored))
		}
		retried := stored[0]
		retried.State, retried.Code = ota.JobQueued, ""
		_, err = s.Apply(ctx, ota.ChangeSet{Jobs: []ota.JobUpdate{{Old: stored[0], New: retried}}})
		if err == nil {
			t.Fatal("a retry of a job whose device another task holds was stored")
		}
		// The other device's job is still active: a third task over it
		// is refused too.
		third := second
		busy := ota.Job{DeviceID: jobs[1].DeviceID, Device: jobs[1].Device, Product: "demo", Module: "default",
			State: ota.JobQueued, FromVersion: "1.0.0", Version: "1.1.0"}
		wantCode(t, s.CreateTask(ctx, &third, []ota.Job{busy}), ota.ECONFLICT)
	})
}

// Creating a task checks its firmware, although on SQLite its jobs are
// inserted without foreign key checks.
func TestCreateTaskOfAMissingFirmwareIsNotFound(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("op")
		_, jobs := rollout(t, s, 1)
		task := ota.Task{Product: "demo", Module: "default", FirmwareID: 9999, Version: "1.1.0", Mode: ota.ModePush,
			State: ota.TaskRunning, Total: 1}
		wantCode(t, s.CreateTask(ctx, &task, []ota.Job{{DeviceID: jobs[0].DeviceID + 100, Device: "x", Product: "demo",
			Module: "default", State: ota.JobQueued, Version: "1.1.0"}}), ota.ENOTFOUND)
	})
}
