package api_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
)

// A deprecated firmware takes no new task while its running task goes on;
// it is deleted once no unfinished task uses it, its file goes, and the
// task that used it still names its version and hash.
func TestFirmwareLifecycle(t *testing.T) {
	te := newTaskEnv(t, 3)
	ops := te.token("ops", ota.RoleOperator)
	fwPath := "/api/v1/firmware/" + strconv.FormatInt(te.fw.ID, 10)
	task := te.create(te.task(map[string]any{"devices": []string{"d1", "d2"}}))
	te.waitTask(task.ID, "running", running)

	var fw ota.Firmware
	te.ok(request{method: "POST", path: fwPath + "/deprecate", token: ops}, 200, &fw)
	if fw.Status != ota.FirmwareDeprecated {
		t.Errorf("deprecated: %+v", fw)
	}
	p := te.fails(request{method: "POST", path: "/api/v1/tasks", token: te.admin, body: te.task(map[string]any{"devices": []string{"d3"}})}, 409, ota.ECONFLICT)
	if !strings.Contains(p.Detail, "is deprecated: no new task may use it") {
		t.Errorf("new task on a deprecated firmware: %s", p.Detail)
	}
	te.report("d1", "1.1.0") // the running task goes on
	te.waitTask(task.ID, "d1 succeeded", func(t ota.Task) bool { return t.Counts[ota.JobSucceeded] == 1 })

	p = te.fails(request{method: "DELETE", path: fwPath, token: ops}, 409, ota.ECONFLICT)
	if !strings.Contains(p.Detail, "used by 1 task that is not finished") {
		t.Errorf("delete while running: %s", p.Detail)
	}
	te.act(task.ID, "cancel", 200)
	te.ok(request{method: "DELETE", path: fwPath, token: ops}, 204, nil)
	te.ok(request{method: "GET", path: fwPath, token: te.admin}, 200, &fw)
	if fw.Status != ota.FirmwareDeleted || fw.Version != "1.1.0" || fw.SHA256 != te.fw.SHA256 {
		t.Errorf("deleted firmware's record: %+v", fw)
	}
	te.fails(request{method: "GET", path: fwPath + "/file", token: te.admin}, 404, ota.ENOTFOUND)
	if files := te.blobFiles(); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
	if got := te.getTask(task.ID); got.FirmwareID != te.fw.ID || got.Version != "1.1.0" {
		t.Errorf("the task's firmware: %d %s", got.FirmwareID, got.Version)
	}
	if jobs := te.allJobs(taskURL(task.ID, "jobs"), 10); len(jobs) != 2 || jobs[0].Version != "1.1.0" {
		t.Errorf("the task's jobs: %+v", jobs)
	}
	var evs struct{ Items []ota.Event }
	te.ok(request{method: "GET", path: "/api/v1/events?actor=ops&kind=firmware", token: te.admin}, 200, &evs)
	if len(evs.Items) != 2 {
		t.Errorf("firmware events of ops: %+v", evs.Items)
	}
	te.fails(request{method: "POST", path: fwPath + "/deprecate", token: ops}, 409, ota.ECONFLICT)
	te.fails(request{method: "DELETE", path: fwPath, token: ops}, 409, ota.ECONFLICT)
}
