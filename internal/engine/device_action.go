package engine

import (
	"context"
	"slices"

	"github.com/otter-ota/otter/internal/ota"
)

// maxDeviceAction bounds the devices one per-device action names: the
// keys go into one query.
const maxDeviceAction = 1000

// cancellable are the states a per-device cancel ends: the device has not
// started installing (installing and rebooting jobs run to their end).
var cancellable = append([]ota.JobState{ota.JobAwaitingVersion, ota.JobQueued}, withdrawable...)

// RetryFailedDevices requeues the failed and timed-out jobs of the given
// devices in a task, and runs the task again if it had completed. It
// returns how many jobs were requeued.
func (e *Engine) RetryFailedDevices(ctx context.Context, id int64, devices []string) (ota.Task, int, error) {
	if err := checkDeviceList(devices); err != nil {
		return ota.Task{}, 0, err
	}
	actor := ota.ActorFrom(ctx)
	var n int
	err := e.control(ctx, func(ctx context.Context) error {
		if err := e.checkMembers(ctx, id, devices); err != nil {
			return err
		}
		var err error
		if n, err = e.retryFailedOf(ctx, id, devices, actor); err != nil || n == 0 {
			return err
		}
		if ts := e.tasks[id]; ts.task.State == ota.TaskCompleted {
			return e.changeTask(ctx, ts, ota.TaskReopen, "", actor)
		}
		return nil
	})
	if err != nil {
		return ota.Task{}, 0, err
	}
	t, err := e.st.GetTask(ctx, id)
	return t, n, err
}

// CancelDevices cancels the jobs of the given devices in a task that have
// not started installing; devices told to upgrade are told it is
// withdrawn. The task goes on with its other devices. It returns how many
// jobs were cancelled.
func (e *Engine) CancelDevices(ctx context.Context, id int64, devices []string) (ota.Task, int, error) {
	if err := checkDeviceList(devices); err != nil {
		return ota.Task{}, 0, err
	}
	actor := ota.ActorFrom(ctx)
	var n int
	err := e.control(ctx, func(ctx context.Context) error {
		if err := e.checkMembers(ctx, id, devices); err != nil {
			return err
		}
		var err error
		n, err = e.cancelDevices(ctx, id, devices, actor)
		return err
	})
	if err != nil {
		return ota.Task{}, 0, err
	}
	t, err := e.st.GetTask(ctx, id)
	return t, n, err
}

func (e *Engine) cancelDevices(ctx context.Context, id int64, devices []string, actor string) (int, error) {
	ts, err := e.taskFor(ctx, id)
	if err != nil {
		return 0, err
	}
	jobs, err := e.st.JobsWithVersions(ctx, ota.JobVersionQuery{TaskID: id, States: cancellable, Devices: devices, Limit: maxDeviceAction})
	if err != nil || len(jobs) == 0 {
		return 0, err
	}
	w := e.newWork()
	n := 0
	for _, jv := range jobs {
		w.addJobs([]ota.Job{jv.Job})
		if w.transition(jv.Job.ID, ota.JobInput{Kind: ota.JobCancel, Message: "cancelled for this device by " + actor}, actor) {
			n++
			if slices.Contains(withdrawable, jv.Job.State) {
				w.sendCancel(jv.Job)
			}
		}
	}
	ts.wantSweep = true
	return n, e.commit(ctx, w)
}

func checkDeviceList(devices []string) error {
	switch {
	case len(devices) == 0:
		return ota.Errorf(ota.EINVALID, "name at least one device")
	case len(devices) > maxDeviceAction:
		return ota.Errorf(ota.EINVALID, "%d devices named: at most %d at a time", len(devices), maxDeviceAction)
	}
	return nil
}

// checkMembers refuses devices that have no job in the task, naming them.
func (e *Engine) checkMembers(ctx context.Context, id int64, devices []string) error {
	if _, err := e.taskFor(ctx, id); err != nil {
		return err
	}
	jobs, err := e.st.JobsWithVersions(ctx, ota.JobVersionQuery{TaskID: id, States: ota.JobStates, Devices: devices, Limit: maxDeviceAction * 4})
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(jobs))
	for _, jv := range jobs {
		have[jv.Job.Device] = true
	}
	missing := absent(devices, have)
	if len(missing) == 0 {
		return nil
	}
	verb := "have no job"
	if len(missing) == 1 {
		verb = "has no job"
	}
	err = ota.Errorf(ota.EINVALID, "%s %s in task %d: %s", ota.Plural(len(missing), "device", "devices"), verb, id, listed(missing))
	err.(*ota.Error).Details = missing
	return err
}
