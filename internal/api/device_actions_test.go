package api_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// Per-device actions: retry the failed job of one device, cancel the job of
// another; the others are left alone, every change is an event naming the
// operator, and a device without a job in the task is refused by name.
func TestTaskPerDeviceActions(t *testing.T) {
	te := newTaskEnv(t, 4)
	ops := te.token("ops", ota.RoleOperator)
	task := te.create(te.task(map[string]any{"all": true}))
	te.waitTask(task.ID, "running", running)
	byDevice := map[string]ota.Job{}
	for _, j := range te.allJobs(taskURL(task.ID, "jobs"), 10) {
		byDevice[j.Device] = j
	}
	for _, d := range []string{"d1", "d2"} {
		_, err := te.eng.Progress(context.Background(), te.devs[d], wire.Progress{
			Job: strconv.FormatInt(byDevice[d].ID, 10), State: wire.StateFailed, Code: ota.CodeDownloadFailed})
		if err != nil {
			t.Fatal(err)
		}
	}
	te.waitTask(task.ID, "two failed", func(t ota.Task) bool { return t.Counts[ota.JobFailed] == 2 })

	var retried api.RetriedTask
	te.ok(request{method: "POST", path: taskURL(task.ID, "retry-failed-devices"), token: ops,
		body: map[string]any{"devices": []string{"d1"}}}, 200, &retried)
	if retried.Requeued != 1 || retried.Counts[ota.JobFailed] != 1 {
		t.Errorf("retry d1: %d requeued, counts %v", retried.Requeued, retried.Counts)
	}
	var cancelled api.CancelledDevicesTask
	te.ok(request{method: "POST", path: taskURL(task.ID, "cancel-devices"), token: ops,
		body: map[string]any{"devices": []string{"d3", "d2"}}}, 200, &cancelled)
	if cancelled.Cancelled != 1 || cancelled.Counts[ota.JobCancelled] != 1 || cancelled.State != ota.TaskRunning {
		t.Errorf("cancel d3 (d2 has failed: left as it is): %d cancelled, %s %v", cancelled.Cancelled, cancelled.State, cancelled.Counts)
	}
	want := map[string]ota.JobState{"d1": ota.JobQueued, "d2": ota.JobFailed, "d3": ota.JobCancelled, "d4": ota.JobQueued}
	for _, j := range te.allJobs(taskURL(task.ID, "jobs"), 10) {
		if j.State != want[j.Device] {
			t.Errorf("%s is %s, want %s", j.Device, j.State, want[j.Device])
		}
	}
	for _, d := range []string{"d1", "d3"} {
		var evs struct{ Items []ota.Event }
		te.ok(request{method: "GET", path: "/api/v1/events?actor=ops&job=" + strconv.FormatInt(byDevice[d].ID, 10), token: te.admin}, 200, &evs)
		if len(evs.Items) == 0 {
			t.Errorf("no event of ops about %s's job", d)
		}
	}

	p := te.fails(request{method: "POST", path: taskURL(task.ID, "cancel-devices"), token: ops,
		body: map[string]any{"devices": []string{"d4", "nosuch"}}}, 400, ota.EINVALID)
	if p.Detail != "1 device has no job in task 1: nosuch" || len(p.Details) != 1 {
		t.Errorf("unknown device: %+v", p)
	}
	te.fails(request{method: "POST", path: taskURL(task.ID, "retry-failed-devices"), token: ops,
		body: map[string]any{"devices": []string{}}}, 422, ota.EINVALID)
	te.fails(request{method: "POST", path: taskURL(99, "cancel-devices"), token: ops,
		body: map[string]any{"devices": []string{"d1"}}}, 404, ota.ENOTFOUND)
	viewer := te.token("watcher", ota.RoleViewer)
	te.fails(request{method: "POST", path: taskURL(task.ID, "cancel-devices"), token: viewer,
		body: map[string]any{"devices": []string{"d4"}}}, 403, ota.EFORBIDDEN)
	if strings.Contains(p.Detail, "--") {
		t.Errorf("the message names a flag: %s", p.Detail)
	}
}
