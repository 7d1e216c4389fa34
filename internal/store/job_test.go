package store_test

import (
	"fmt"
	"reflect"
	"slices"
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

// A download's rising percent is written by a statement of its own (the
// percent and the update time alone), in the same batch as full changes,
// with the same revision check.
func TestApplyWritesPercentOnlyChangesWithRevisions(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("engine")
		task, jobs := rollout(t, s, 3)
		now := time.Now().UTC().Truncate(time.Microsecond)
		moveAll(t, s, jobs, func(n *ota.Job) {
			n.State, n.Percent, n.SentAt, n.StartedAt, n.UpdatedAt = ota.JobDownloading, 0, &now, &now, now
		})
		later := now.Add(time.Second)
		percent := func(j ota.Job, p int) ota.JobUpdate {
			n := j
			n.Percent, n.UpdatedAt = p, later
			return ota.JobUpdate{Old: j, New: n}
		}
		done := jobs[2]
		done.State, done.Percent, done.UpdatedAt = ota.JobDownloaded, 100, later
		stale := percent(jobs[1], 60)
		stale.Old.Rev--
		conflicts, err := s.Apply(ctx, ota.ChangeSet{Jobs: []ota.JobUpdate{percent(jobs[0], 40), stale, {Old: jobs[2], New: done}}})
		must(t, err)
		if len(conflicts) != 1 || conflicts[0] != jobs[1].ID {
			t.Fatalf("conflicts %v, want the stale percent change (job %d) alone", conflicts, jobs[1].ID)
		}
		for _, want := range []struct {
			job     ota.Job
			state   ota.JobState
			percent int
			rev     int64
		}{
			{jobs[0], ota.JobDownloading, 40, jobs[0].Rev + 1},
			{jobs[1], ota.JobDownloading, 0, jobs[1].Rev},
			{jobs[2], ota.JobDownloaded, 100, jobs[2].Rev + 1},
		} {
			j, err := s.GetJob(ctx, want.job.ID)
			must(t, err)
			if j.State != want.state || j.Percent != want.percent || j.Rev != want.rev || j.SentAt == nil || !j.SentAt.Equal(now) {
				t.Errorf("job %d: %s at %d%%, rev %d, sent %v; want %s at %d%%, rev %d, sent %v",
					j.ID, j.State, j.Percent, j.Rev, j.SentAt, want.state, want.percent, want.rev, now)
			}
			if want.rev != want.job.Rev && !j.UpdatedAt.Equal(later) {
				t.Errorf("job %d updated %v, want %v", j.ID, j.UpdatedAt, later)
			}
		}
		got, err := s.GetTask(ctx, task.ID)
		must(t, err)
		if got.Counts[ota.JobDownloading] != 2 || got.Counts[ota.JobDownloaded] != 1 {
			t.Fatalf("counts %v, want 2 downloading and 1 downloaded", got.Counts)
		}
	})
}

// A job's moves in flight (a change of state, percent, code, message or
// send time that keeps its attempt, start, deadline and retry time) are
// written by a statement of their own, beside full changes in the same
// batch, with the same revision check; what they leave out of SET keeps
// its value.
func TestApplyWritesInFlightChangesWithRevisions(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("engine")
		task, jobs := rollout(t, s, 3)
		now := time.Now().UTC().Truncate(time.Microsecond)
		deadline := now.Add(time.Hour)
		moveAll(t, s, jobs, func(n *ota.Job) {
			n.State, n.SentAt, n.StartedAt, n.Deadline, n.UpdatedAt = ota.JobNotified, &now, &now, &deadline, now
		})
		later, resent := now.Add(time.Second), now.Add(2*time.Second)
		installing := jobs[0]
		installing.State, installing.Percent, installing.Message, installing.SentAt, installing.UpdatedAt =
			ota.JobInstalling, 100, "writing slot b", &resent, later
		stale := jobs[1]
		stale.State, stale.UpdatedAt = ota.JobDownloading, later
		failed := jobs[2]
		failed.State, failed.Code, failed.Message, failed.Deadline, failed.UpdatedAt = ota.JobFailed, "download_failed", "gone", nil, later
		staleOld := jobs[1]
		staleOld.Rev--
		conflicts, err := s.Apply(ctx, ota.ChangeSet{Jobs: []ota.JobUpdate{
			{Old: jobs[0], New: installing}, {Old: staleOld, New: stale}, {Old: jobs[2], New: failed}}})
		must(t, err)
		if len(conflicts) != 1 || conflicts[0] != jobs[1].ID {
			t.Fatalf("conflicts %v, want the stale change (job %d) alone", conflicts, jobs[1].ID)
		}
		for _, want := range []struct {
			job ota.Job
			rev int64
		}{{installing, jobs[0].Rev + 1}, {jobs[1], jobs[1].Rev}, {failed, jobs[2].Rev + 1}} {
			j, err := s.GetJob(ctx, want.job.ID)
			must(t, err)
			w := want.job
			if j.State != w.State || j.Percent != w.Percent || j.Code != w.Code || j.Message != w.Message || j.Rev != want.rev ||
				j.Attempt != w.Attempt || !sameTime(j.SentAt, w.SentAt) || !sameTime(j.StartedAt, w.StartedAt) ||
				!sameTime(j.Deadline, w.Deadline) || !j.UpdatedAt.Equal(w.UpdatedAt) {
				t.Errorf("job %d: %s %d%% %q %q rev %d attempt %d sent %v started %v deadline %v updated %v;\nwant %s %d%% %q %q rev %d attempt %d sent %v started %v deadline %v updated %v",
					j.ID, j.State, j.Percent, j.Code, j.Message, j.Rev, j.Attempt, j.SentAt, j.StartedAt, j.Deadline, j.UpdatedAt,
					w.State, w.Percent, w.Code, w.Message, want.rev, w.Attempt, w.SentAt, w.StartedAt, w.Deadline, w.UpdatedAt)
			}
		}
		got, err := s.GetTask(ctx, task.ID)
		must(t, err)
		if got.Counts[ota.JobInstalling] != 1 || got.Counts[ota.JobNotified] != 1 || got.Counts[ota.JobFailed] != 1 {
			t.Fatalf("counts %v, want 1 installing, 1 notified, 1 failed", got.Counts)
		}
	})
}

func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}

// A new task's jobs are stored as given, in rollout order, across the
// statements they take (2,500 jobs: more than one statement's worth, and
// a last one cut short): ids and the queue follow the order, and every
// column is the job's own or the task's.
func TestCreateTaskStoresJobsInRolloutOrder(t *testing.T) {
	run(t, testCreateTaskStoresJobsInRolloutOrder)
}

func testCreateTaskStoresJobsInRolloutOrder(t *testing.T, s store.Store) {
	ctx := as("op")
	const n = 2500
	must(t, s.CreateProduct(ctx, &ota.Product{Key: "demo"}))
	nd := make([]store.NewDevice, n)
	for i := range nd {
		nd[i] = store.NewDevice{Product: "demo", Key: fmt.Sprintf("d%04d", i), SecretHash: hash("s")}
	}
	devs, err := s.CreateDevices(ctx, nd)
	must(t, err)
	fw := ota.Firmware{Product: "demo", Module: "default", Version: "1.1.0", Size: 1, SHA256: fmt.Sprintf("%064d", 1), Signature: "x", BlobKey: "k"}
	must(t, s.CreateFirmware(ctx, &fw))
	task := ota.Task{Product: "demo", Module: "default", FirmwareID: fw.ID, Version: "1.1.0", Mode: ota.ModePush,
		State: ota.TaskScheduled, Total: n}
	want := make([]ota.Job, n)
	for i := range want {
		d := devs[(i*7919)%n] // a rollout order that is not the devices' order
		want[i] = ota.Job{DeviceID: d.ID, Device: d.Key, Product: "demo", Module: "default", State: ota.JobQueued,
			Phase: ota.PhaseIndex(i * 3 / n), FromVersion: fmt.Sprintf("1.0.%d", i%5), Version: "1.1.0", Attempt: 1}
		if i%10 == 3 {
			want[i].State, want[i].FromVersion = ota.JobAwaitingVersion, ""
		}
	}
	must(t, s.CreateTask(ctx, &task, want))
	var got []ota.Job
	for page := (store.Page{Limit: store.MaxPageSize}); ; {
		jobs, next, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, page)
		must(t, err)
		got = append(got, jobs...)
		if next == "" {
			break
		}
		page.After = next
	}
	if len(got) != n {
		t.Fatalf("%d jobs stored, want %d", len(got), n)
	}
	for i, g := range got {
		w := want[i]
		w.ID, w.TaskID, w.CreatedAt, w.UpdatedAt = g.ID, task.ID, task.CreatedAt, task.CreatedAt
		if i > 0 && g.ID <= got[i-1].ID {
			t.Fatalf("job %d has id %d after %d", i, g.ID, got[i-1].ID)
		}
		g.CreatedAt, g.UpdatedAt = g.CreatedAt.UTC(), g.UpdatedAt.UTC()
		w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC().Truncate(time.Microsecond), w.UpdatedAt.UTC().Truncate(time.Microsecond)
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Fatalf("job %d stored as\n%+v\nwant\n%+v", i, g, w)
		}
	}
	// The queue of each phase follows the rollout order.
	queued, _, err := s.QueuedJobs(ctx, ota.QueuedQuery{TaskID: task.ID, MaxPhase: 2, Limit: n})
	must(t, err)
	var order []ota.Job
	for _, w := range want {
		if w.State == ota.JobQueued {
			order = append(order, w)
		}
	}
	if len(queued) != len(order) {
		t.Fatalf("%d jobs queued, want %d", len(queued), len(order))
	}
	for i, q := range queued {
		if q.DeviceID != order[i].DeviceID {
			t.Fatalf("queued job %d is device %d, want %d", i, q.DeviceID, order[i].DeviceID)
		}
	}
}

// TestQueuedJobsReadOnFromAPlace pages through a task's queued jobs of
// online devices as a sweep that reads ahead does: each read goes on from
// the place the one before it returned, and the jobs of a read are started
// only after the next read (still queued when it ran). Every job comes
// once, in rollout order, phase by phase, and offline devices are skipped.
func TestQueuedJobsReadOnFromAPlace(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("engine")
		task, jobs := rollout(t, s, 50)
		var presence []ota.Presence
		for i, j := range jobs {
			presence = append(presence, ota.Presence{DeviceID: j.DeviceID, Online: i%5 != 0, At: time.Now()})
		}
		_, err := s.Apply(ctx, ota.ChangeSet{Presence: presence})
		must(t, err)
		want := map[int64]bool{}
		for i, j := range jobs {
			if i%5 != 0 {
				want[j.ID] = true
			}
		}
		q := ota.QueuedQuery{TaskID: task.ID, MaxPhase: 1, Limit: 7, OnlineOnly: true, Now: time.Now()}
		seen := map[int64]bool{}
		lastPhase := ota.PhaseIndex(0)
		var changes []ota.JobUpdate // the previous read's jobs, started after this read
		for reads := 0; ; reads++ {
			got, last, err := s.QueuedJobs(ctx, q)
			must(t, err)
			_, err = s.Apply(ctx, ota.ChangeSet{Jobs: changes})
			must(t, err)
			changes = nil
			for _, j := range got {
				if seen[j.ID] || !want[j.ID] || j.Phase < lastPhase {
					t.Fatalf("read %d returned job %d (phase %d) again, offline or out of order", reads, j.ID, j.Phase)
				}
				seen[j.ID], lastPhase = true, j.Phase
				n := j
				n.State, n.UpdatedAt = ota.JobNotified, time.Now()
				changes = append(changes, ota.JobUpdate{Old: j, New: n})
			}
			if len(got) > 0 && last.Phase != int(got[len(got)-1].Phase) {
				t.Fatalf("place %+v, last job's phase %d", last, got[len(got)-1].Phase)
			}
			if len(got) < q.Limit {
				break
			}
			q.After = &last
		}
		if len(seen) != len(want) {
			t.Fatalf("read %d jobs, want %d", len(seen), len(want))
		}
	})
}

// moveAll applies move to every job in one change set and reads the jobs
// back as stored, with their new revisions.
func moveAll(t *testing.T, s store.Store, jobs []ota.Job, move func(*ota.Job)) {
	t.Helper()
	ctx := as("engine")
	changes := make([]ota.JobUpdate, 0, len(jobs))
	for _, j := range jobs {
		n := j
		move(&n)
		changes = append(changes, ota.JobUpdate{Old: j, New: n})
	}
	_, err := s.Apply(ctx, ota.ChangeSet{Jobs: changes})
	must(t, err)
	for i := range jobs {
		jobs[i], err = s.GetJob(ctx, jobs[i].ID)
		must(t, err)
	}
}

// The jobs by device (job_devices, active_jobs: migration 14) follow a
// task's creation, the cancel of its queued jobs (active_jobs kept by the
// store, a statement over many jobs) and a new task over the
// same devices: what a device's readers answer is what its jobs are.
func TestJobsByDeviceFollowCancelAndNewTask(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("op")
		first, jobs := rollout(t, s, 3)
		devices := make([]int64, len(jobs))
		for i, j := range jobs {
			devices[i] = j.DeviceID
		}
		active, err := s.ActiveJobs(ctx, devices)
		must(t, err)
		if len(active) != 3 {
			t.Fatalf("%d active jobs after the task's creation, want 3", len(active))
		}
		_, err = s.CancelQueued(ctx, ota.CancelRequest{TaskID: first.ID, Code: ota.CodeTaskCancelled, Actor: "op", At: time.Now()})
		must(t, err)
		active, err = s.ActiveJobs(ctx, devices)
		must(t, err)
		if len(active) != 0 {
			t.Fatalf("%d active jobs after the cancel, want none: %+v", len(active), active)
		}
		second := ota.Task{Product: "demo", Module: "default", FirmwareID: first.FirmwareID, Version: "1.1.0", Mode: ota.ModePush,
			State: ota.TaskRunning, Total: 3}
		again := make([]ota.Job, len(jobs))
		for i, j := range jobs {
			again[i] = ota.Job{DeviceID: j.DeviceID, Device: j.Device, Product: "demo", Module: "default",
				State: ota.JobQueued, FromVersion: "1.0.0", Version: "1.1.0"}
		}
		must(t, s.CreateTask(ctx, &second, again))
		active, err = s.ActiveJobs(ctx, devices)
		must(t, err)
		last, err := s.LastJobs(ctx, devices)
		must(t, err)
		for _, js := range [][]ota.Job{active, last} {
			if len(js) != 3 {
				t.Fatalf("%d jobs, want the second task's 3: %+v", len(js), js)
			}
			for _, j := range js {
				if j.TaskID != second.ID || j.State != ota.JobQueued {
					t.Errorf("job %d of task %d %s, want a queued job of task %d", j.ID, j.TaskID, j.State, second.ID)
				}
			}
		}
		members, err := s.TaskMembers(ctx, []int64{first.ID, second.ID}, devices)
		must(t, err)
		for _, d := range devices {
			if members[ota.TaskDevice{TaskID: first.ID, DeviceID: d}] || !members[ota.TaskDevice{TaskID: second.ID, DeviceID: d}] {
				t.Errorf("device %d: members %v, want the second task only (the first's job was cancelled)", d, members)
			}
		}
		page, _, err := s.ListJobs(ctx, store.JobFilter{DeviceID: devices[0]}, store.Page{Limit: 10})
		must(t, err)
		if len(page) != 2 || page[0].DeviceID != devices[0] || page[1].DeviceID != devices[0] {
			t.Errorf("device %d's jobs: %+v, want its 2", devices[0], page)
		}
	})
}

// active_jobs follows Apply's changes of activity, several at once: the
// jobs a batch ends leave a device's active jobs, a retry in a later batch
// brings its job back, and a job whose state stays active is untouched.
func TestActiveJobsFollowApply(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("engine")
		_, jobs := rollout(t, s, 3)
		devices := make([]int64, len(jobs))
		for i, j := range jobs {
			devices[i] = j.DeviceID
		}
		activeIDs := func() []int64 {
			t.Helper()
			active, err := s.ActiveJobs(ctx, devices)
			must(t, err)
			var ids []int64
			for _, j := range active {
				ids = append(ids, j.ID)
			}
			slices.Sort(ids)
			return ids
		}
		var c ota.ChangeSet
		ended := make([]ota.Job, 2)
		for i, j := range jobs[:2] {
			ended[i] = j
			ended[i].State, ended[i].Code = ota.JobFailed, "install_failed"
			c.Jobs = append(c.Jobs, ota.JobUpdate{Old: j, New: ended[i]})
		}
		offered := jobs[2]
		offered.State = ota.JobOffered
		c.Jobs = append(c.Jobs, ota.JobUpdate{Old: jobs[2], New: offered})
		_, err := s.Apply(ctx, c)
		must(t, err)
		if got := activeIDs(); !slices.Equal(got, []int64{jobs[2].ID}) {
			t.Fatalf("active jobs %v after two ended, want [%d]", got, jobs[2].ID)
		}
		stored, err := s.JobsByID(ctx, []int64{jobs[0].ID})
		must(t, err)
		retried := stored[0]
		retried.State, retried.Code = ota.JobQueued, ""
		_, err = s.Apply(ctx, ota.ChangeSet{Jobs: []ota.JobUpdate{{Old: stored[0], New: retried}}})
		must(t, err)
		want := []int64{jobs[0].ID, jobs[2].ID}
		slices.Sort(want)
		if got := activeIDs(); !slices.Equal(got, want) {
			t.Fatalf("active jobs %v after a retry, want %v", got, want)
		}
	})
}

// CreateTask fills each job as stored, so that the engine may cache them:
// what it returns is what the store reads back (ids, task, state, attempt,
// times to the microsecond, revision), an awaiting job included.
func TestCreateTaskFillsJobsAsStored(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("op")
		first, jobs := rollout(t, s, 3)
		_, err := s.CancelQueued(ctx, ota.CancelRequest{TaskID: first.ID, Code: ota.CodeTaskCancelled, Actor: "op", At: time.Now()})
		must(t, err)
		second := ota.Task{Product: "demo", Module: "default", FirmwareID: first.FirmwareID, Version: "1.1.0", Mode: ota.ModePush,
			State: ota.TaskRunning, Total: 3}
		again := make([]ota.Job, len(jobs))
		devices := make([]int64, len(jobs))
		for i, j := range jobs {
			devices[i] = j.DeviceID
			again[i] = ota.Job{DeviceID: j.DeviceID, Device: j.Device, Product: "demo", Module: "default",
				State: ota.JobQueued, Phase: ota.PhaseIndex(i % 2), FromVersion: "1.0.0", Version: "1.1.0"}
		}
		again[2].State = ota.JobAwaitingVersion
		must(t, s.CreateTask(ctx, &second, again))
		stored, err := s.ActiveJobs(ctx, devices)
		must(t, err)
		byID := map[int64]ota.Job{}
		for _, j := range stored {
			byID[j.ID] = j
		}
		if len(byID) != len(again) {
			t.Fatalf("%d jobs read back, want %d", len(byID), len(again))
		}
		for _, j := range again {
			if got, ok := byID[j.ID]; !ok || !reflect.DeepEqual(got, j) {
				t.Errorf("job filled by CreateTask\n%+v\nread back\n%+v", j, got)
			}
		}
	})
}
