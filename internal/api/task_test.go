package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/engine/enginetest"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// taskEnv is the API over a real store with a real rollout engine running,
// a product "demo" with devices d1..dN on 1.0.0 and a firmware 1.1.0.
type taskEnv struct {
	*env
	eng  *engine.Engine
	down *enginetest.Downlink
	devs map[string]engine.Device
	fw   ota.Firmware
}

func newTaskEnv(t *testing.T, devices int) *taskEnv {
	t.Helper()
	te := &taskEnv{down: &enginetest.Downlink{}, devs: map[string]engine.Device{}}
	te.env = newEnvWith(t, envOptions{engine: func(st store.Store) api.Engine {
		te.eng, _ = enginetest.Start(t, engine.Config{Store: st, Downlink: te.down})
		return te.eng
	}})
	te.product("demo")
	te.devices(1, devices, "1.0.0")
	te.fw = te.firmware("version=1.1.0")
	return te
}

// devices registers d<from>..d<to> reporting version of the default module.
func (te *taskEnv) devices(from, to int, version string) {
	te.t.Helper()
	var nd []store.NewDevice
	for i := from; i <= to; i++ {
		nd = append(nd, store.NewDevice{Product: "demo", Key: fmt.Sprintf("d%d", i), SecretHash: []byte("x"),
			Tags: map[string]string{"ring": []string{"beta", "main"}[i%2]}, Versions: map[string]string{"default": version}})
	}
	created, err := te.st.CreateDevices(context.Background(), nd)
	if err != nil {
		te.t.Fatal(err)
	}
	for _, d := range created {
		te.devs[d.Key] = engine.Device{ID: d.ID, Product: d.Product, Key: d.Key}
	}
}

func (te *taskEnv) firmware(query string) ota.Firmware {
	te.t.Helper()
	var fw ota.Firmware
	resp := te.upload("product=demo&"+query, []byte("image "+query))
	if resp.status != http.StatusCreated {
		te.t.Fatalf("upload %s: %d %s", query, resp.status, resp.body)
	}
	if err := json.Unmarshal(resp.body, &fw); err != nil {
		te.t.Fatal(err)
	}
	return fw
}

// task is a task creation body for the env's firmware.
func (te *taskEnv) task(target map[string]any, extra ...any) map[string]any {
	body := map[string]any{"firmware_id": te.fw.ID, "target": target}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	return body
}

func (te *taskEnv) create(body map[string]any) ota.Task {
	te.t.Helper()
	var task ota.Task
	te.ok(request{method: "POST", path: "/api/v1/tasks", token: te.admin, body: body}, http.StatusCreated, &task)
	return task
}

func (te *taskEnv) getTask(id int64) ota.Task {
	te.t.Helper()
	var task ota.Task
	te.ok(request{method: "GET", path: taskURL(id, ""), token: te.admin}, http.StatusOK, &task)
	return task
}

// waitTask polls the task until ok holds, failing the test after a while.
func (te *taskEnv) waitTask(id int64, what string, ok func(ota.Task) bool) ota.Task {
	te.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		task := te.getTask(id)
		if ok(task) {
			return task
		}
		if time.Now().After(deadline) {
			te.t.Fatalf("task %d never became %s: %+v", id, what, task)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronization
	}
}

func (te *taskEnv) act(id int64, action string, want int) ota.Task {
	te.t.Helper()
	var task ota.Task
	r := request{method: "POST", path: taskURL(id, action), token: te.admin}
	if want != http.StatusOK {
		te.fails(r, want, codeFor(want))
		return task
	}
	te.ok(r, want, &task)
	return task
}

func codeFor(status int) string {
	return map[int]string{400: ota.EINVALID, 403: ota.EFORBIDDEN, 404: ota.ENOTFOUND, 409: ota.ECONFLICT, 503: ota.EUNAVAILABLE}[status]
}

// report makes a device report the version it runs.
func (te *taskEnv) report(key, version string) {
	te.t.Helper()
	if _, err := te.eng.Inform(context.Background(), te.devs[key], wire.Inform{Modules: map[string]string{"default": version}}); err != nil {
		te.t.Fatal(err)
	}
}

func taskURL(id int64, action string) string {
	u := "/api/v1/tasks/" + strconv.FormatInt(id, 10)
	if action != "" {
		u += "/" + action
	}
	return u
}

func running(t ota.Task) bool { return t.State == ota.TaskRunning }

// jobPage is a page of jobs as the API answers it.
type jobPage struct {
	Items []ota.Job `json:"items"`
	Next  string    `json:"next"`
}

// allJobs follows the pages of a job list.
func (te *taskEnv) allJobs(path string, limit int) []ota.Job {
	te.t.Helper()
	var out []ota.Job
	after := ""
	for range 100 {
		var p jobPage
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		te.ok(request{method: "GET", path: fmt.Sprintf("%s%slimit=%d&after=%s", path, sep, limit, after), token: te.admin}, 200, &p)
		if len(p.Items) > limit {
			te.t.Fatalf("%s: page of %d items, limit %d", path, len(p.Items), limit)
		}
		out = append(out, p.Items...)
		if p.Next == "" {
			return out
		}
		after = p.Next
	}
	te.t.Fatalf("%s: the pages never end", path)
	return nil
}

func devicesOf(jobs []ota.Job) []string {
	var keys []string
	for _, j := range jobs {
		keys = append(keys, j.Device)
	}
	slices.Sort(keys)
	return keys
}

func TestTaskDryRunPagesThePlan(t *testing.T) {
	te := newTaskEnv(t, 7)
	body := te.task(map[string]any{"all": true}, "dry_run", true, "policy", map[string]any{"phases": []float64{20, 100}})
	var seen []string
	after := ""
	for range 10 {
		var p api.TaskPreview
		te.ok(request{method: "POST", path: "/api/v1/tasks?limit=3&after=" + after, token: te.admin, body: body}, http.StatusOK, &p)
		if p.Total != 7 || !slices.Equal(p.PerPhase, []int{2, 5}) || len(p.Devices) > 3 {
			t.Fatalf("dry run page: %+v", p)
		}
		seen = append(seen, p.Devices...)
		if after = p.Next; after == "" {
			break
		}
	}
	if len(seen) != 7 || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != 7 {
		t.Errorf("dry run pages gave %v, want each of the 7 devices once", seen)
	}
	var tasks struct{ Items []ota.Task }
	te.ok(request{method: "GET", path: "/api/v1/tasks", token: te.admin}, 200, &tasks)
	if len(tasks.Items) != 0 {
		t.Errorf("a dry run created tasks: %+v", tasks.Items)
	}
	te.fails(request{method: "POST", path: "/api/v1/tasks?after=99", token: te.admin, body: body}, 400, ota.EINVALID)

	// The dry run orders the devices as the task will.
	var first api.TaskPreview
	te.ok(request{method: "POST", path: "/api/v1/tasks?limit=1000", token: te.admin, body: body}, http.StatusOK, &first)
	delete(body, "dry_run")
	task := te.create(body)
	jobs := te.allJobs(taskURL(task.ID, "jobs"), 1000)
	for i, j := range jobs {
		if wantPhase := min(i/2, 1); j.Device != first.Devices[i] || int(j.Phase) != wantPhase {
			t.Errorf("job %d: device %s phase %d, dry run said %s phase %d", i, j.Device, j.Phase, first.Devices[i], wantPhase)
		}
	}
}

func TestTaskCreateAndRead(t *testing.T) {
	te := newTaskEnv(t, 5)
	body := te.task(map[string]any{"tags": map[string]string{"ring": "main"}}, "name", "beta wave", "mode", "request",
		"policy", map[string]any{"retries": 2, "retry_backoff": "30s", "timeout": "10m", "window": map[string]string{"start": "01:00", "end": "05:00", "tz": "Europe/Paris"},
			"confirm": "both"})
	task := te.create(body)
	want := ota.Policy{Retries: 2, RetryBackoff: ota.Duration(30 * time.Second), Timeout: ota.Duration(10 * time.Minute),
		Window: &ota.Window{Start: "01:00", End: "05:00", TZ: "Europe/Paris"}, Confirm: ota.ConfirmBoth}
	if diff := cmp.Diff(want, task.Policy); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	if task.Name != "beta wave" || task.Mode != ota.ModeRequest || task.Total != 3 || task.Product != "demo" ||
		task.Version != "1.1.0" || task.CreatedBy != "admin" || task.Target.Tags["ring"] != "main" {
		t.Errorf("created %+v", task)
	}
	got := te.waitTask(task.ID, "running", running)
	if got.Counts[ota.JobQueued] != 3 || got.Total != 3 {
		t.Errorf("counts %v total %d, want 3 queued", got.Counts, got.Total)
	}

	jobs := te.allJobs(taskURL(task.ID, "jobs"), 1)
	if keys := devicesOf(jobs); !slices.Equal(keys, []string{"d1", "d3", "d5"}) {
		t.Errorf("jobs of the ring=main task: %v", keys)
	}
	var job ota.Job
	te.ok(request{method: "GET", path: fmt.Sprintf("/api/v1/jobs/%d", jobs[0].ID), token: te.admin}, 200, &job)
	if job.ID != jobs[0].ID || job.TaskID != task.ID || job.State != ota.JobQueued || job.Version != "1.1.0" || job.FromVersion != "1.0.0" {
		t.Errorf("job %+v", job)
	}
	te.fails(request{method: "GET", path: "/api/v1/jobs/999999", token: te.admin}, 404, ota.ENOTFOUND)
	te.fails(request{method: "GET", path: "/api/v1/tasks/999999", token: te.admin}, 404, ota.ENOTFOUND)
	te.fails(request{method: "GET", path: "/api/v1/tasks/999999/jobs", token: te.admin}, 404, ota.ENOTFOUND)

	// A job's raw JSON carries the fields the CLI shows.
	resp := te.do(request{method: "GET", path: fmt.Sprintf("/api/v1/jobs/%d", job.ID), token: te.admin})
	for _, f := range []string{`"device":`, `"state":"queued"`, `"percent":0`, `"attempt":`, `"updated":`} {
		if !strings.Contains(string(resp.body), f) {
			t.Errorf("job JSON lacks %s: %s", f, resp.body)
		}
	}
}

func TestTaskListsAndJobFilters(t *testing.T) {
	te := newTaskEnv(t, 4)
	fw2 := te.firmware("version=1.2.0")
	a := te.create(te.task(map[string]any{"devices": []string{"d1", "d2"}}))
	b := te.create(map[string]any{"firmware_id": fw2.ID, "target": map[string]any{"devices": []string{"d3", "d4"}}})
	te.waitTask(a.ID, "running", running)
	te.report("d1", "1.1.0")
	te.waitTask(a.ID, "one success", func(t ota.Task) bool { return t.Counts[ota.JobSucceeded] == 1 })
	te.act(b.ID, "cancel", 200)

	tests := []struct {
		query string
		want  []int64
	}{
		{"", []int64{b.ID, a.ID}}, // newest first
		{"?firmware=" + strconv.FormatInt(fw2.ID, 10), []int64{b.ID}},
		{"?state=cancelled", []int64{b.ID}},
		{"?state=running&state=cancelled", []int64{b.ID, a.ID}},
		{"?product=other", nil},
	}
	for _, tt := range tests {
		var page struct{ Items []ota.Task }
		te.ok(request{method: "GET", path: "/api/v1/tasks" + tt.query, token: te.admin}, 200, &page)
		var ids []int64
		for _, task := range page.Items {
			ids = append(ids, task.ID)
		}
		if !slices.Equal(ids, tt.want) {
			t.Errorf("tasks%s = %v, want %v", tt.query, ids, tt.want)
		}
	}
	te.fails(request{method: "GET", path: "/api/v1/tasks?state=done", token: te.admin}, 400, ota.EINVALID)
	te.fails(request{method: "GET", path: taskURL(a.ID, "jobs") + "?state=finished", token: te.admin}, 400, ota.EINVALID)

	if got := devicesOf(te.allJobs(taskURL(a.ID, "jobs")+"?state=succeeded", 10)); !slices.Equal(got, []string{"d1"}) {
		t.Errorf("succeeded jobs: %v", got)
	}
	if got := devicesOf(te.allJobs(taskURL(a.ID, "jobs")+"?state=queued&state=notified", 10)); !slices.Equal(got, []string{"d2"}) {
		t.Errorf("queued or notified jobs: %v", got)
	}

	// d1's history: its job of task a, then a later one, in job id order.
	te.waitTask(a.ID, "d2 pending", running)
	c := te.create(map[string]any{"firmware_id": fw2.ID, "target": map[string]any{"devices": []string{"d1"}}})
	hist := te.allJobs("/api/v1/products/demo/devices/d1/jobs", 1)
	if len(hist) != 2 || hist[0].TaskID != a.ID || hist[1].TaskID != c.ID || hist[0].State != ota.JobSucceeded {
		t.Errorf("d1's jobs: %+v", hist)
	}
	te.fails(request{method: "GET", path: "/api/v1/products/demo/devices/nope/jobs", token: te.admin}, 404, ota.ENOTFOUND)
}

func TestTaskConflictsAndSkipBusy(t *testing.T) {
	te := newTaskEnv(t, 4)
	te.create(te.task(map[string]any{"devices": []string{"d3", "d1"}}))

	p := te.fails(request{method: "POST", path: "/api/v1/tasks", token: te.admin, body: te.task(map[string]any{"all": true})}, 409, ota.ECONFLICT)
	if got := slices.Sorted(slices.Values(p.Details)); !slices.Equal(got, []string{"d1", "d3"}) ||
		p.Detail != "2 devices are already being upgraded on module default by another task: d1 (task 1), d3 (task 1); wait for that task to end, cancel it, or leave the busy devices out" {
		t.Errorf("double-targeting problem: %+v", p)
	}
	var preview api.TaskPreview
	te.ok(request{method: "POST", path: "/api/v1/tasks", token: te.admin,
		body: te.task(map[string]any{"all": true, "skip_busy": true}, "dry_run", true)}, 200, &preview)
	if preview.Total != 2 || preview.BusyTotal != 2 || !slices.Equal(slices.Sorted(slices.Values(preview.Busy)), []string{"d1", "d3"}) {
		t.Errorf("dry run with skip_busy: %+v", preview)
	}
	task := te.create(te.task(map[string]any{"all": true, "skip_busy": true}))
	if got := devicesOf(te.allJobs(taskURL(task.ID, "jobs"), 10)); !slices.Equal(got, []string{"d2", "d4"}) {
		t.Errorf("skip_busy task targets %v, want d2 d4", got)
	}
}

func TestTaskVerificationGate(t *testing.T) {
	te := newTaskEnv(t, 3)
	fw := te.firmware("version=2.0.0&verify_required=true")
	batch := map[string]any{"firmware_id": fw.ID, "target": map[string]any{"all": true}}
	p := te.fails(request{method: "POST", path: "/api/v1/tasks", token: te.admin, body: batch}, 409, ota.ECONFLICT)
	if !strings.Contains(p.Detail, "verified") {
		t.Errorf("gate problem: %+v", p)
	}
	te.fails(request{method: "POST", path: "/api/v1/tasks", token: te.admin,
		body: map[string]any{"firmware_id": fw.ID, "verification": true, "target": map[string]any{"all": true}}}, 400, ota.EINVALID)

	v := te.create(map[string]any{"firmware_id": fw.ID, "verification": true, "target": map[string]any{"devices": []string{"d1"}}})
	if !v.Verification || v.Total != 1 {
		t.Errorf("verification task %+v", v)
	}
	te.waitTask(v.ID, "running", running)
	te.fails(request{method: "POST", path: "/api/v1/tasks", token: te.admin, body: batch}, 409, ota.ECONFLICT)

	te.report("d1", "2.0.0")
	done := te.waitTask(v.ID, "completed", func(t ota.Task) bool { return t.State == ota.TaskCompleted })
	if done.Counts[ota.JobSucceeded] != 1 || !strings.Contains(done.Reason, "verified") {
		t.Errorf("verification task ended %+v", done)
	}
	var got ota.Firmware
	te.ok(request{method: "GET", path: fmt.Sprintf("/api/v1/firmware/%d", fw.ID), token: te.admin}, 200, &got)
	if got.VerifiedBy != v.ID || got.VerifiedAt == nil || !got.VerifyRequired {
		t.Errorf("firmware after verification: %+v", got)
	}
	task := te.create(batch)
	if task.Total != 2 {
		t.Errorf("batch task after verification targets %d devices, want d2 and d3", task.Total)
	}
}

func TestTaskActions(t *testing.T) {
	te := newTaskEnv(t, 5)
	task := te.create(te.task(map[string]any{"all": true}, "policy", map[string]any{"phases": []float64{20, 100}, "phase_gate": "manual"}))
	te.waitTask(task.ID, "running", running)

	if got := te.act(task.ID, "pause", 200); got.State != ota.TaskPaused {
		t.Errorf("after pause: %s", got.State)
	}
	if got := te.act(task.ID, "pause", 200); got.State != ota.TaskPaused {
		t.Errorf("pausing again: %s", got.State) // idempotent
	}
	if got := te.act(task.ID, "advance", 200); got.Phase != 1 || got.State != ota.TaskPaused {
		t.Errorf("after advance: phase %d state %s", got.Phase, got.State)
	}
	te.act(task.ID, "advance", 409) // the last phase already
	if got := te.act(task.ID, "resume", 200); got.State != ota.TaskRunning {
		t.Errorf("after resume: %s", got.State)
	}

	// Pushes reach connected devices once the task runs.
	if err := te.eng.Connected(context.Background(), te.devs["d2"]); err != nil {
		t.Fatal(err)
	}
	te.waitTask(task.ID, "notified d2", func(ota.Task) bool { return slices.Contains(te.down.Kinds("d2"), string(wire.KindUpgrade)) })

	if got := te.act(task.ID, "cancel", 200); got.State != ota.TaskCancelled || got.EndedAt == nil {
		t.Errorf("after cancel: %+v", got)
	}
	te.act(task.ID, "resume", 409)
	te.act(999999, "pause", 404)
	got := te.getTask(task.ID)
	if got.Counts[ota.JobCancelled] != 5 {
		t.Errorf("counts after cancel: %v", got.Counts)
	}
}

func TestTaskRetryFailed(t *testing.T) {
	te := newTaskEnv(t, 3)
	task := te.create(te.task(map[string]any{"all": true}))
	te.waitTask(task.ID, "running", running)
	jobs := te.allJobs(taskURL(task.ID, "jobs"), 10)
	for _, j := range jobs[:2] { // the third stays queued: the task runs on
		_, err := te.eng.Progress(context.Background(), te.devs[j.Device], wire.Progress{
			Job: strconv.FormatInt(j.ID, 10), State: wire.StateFailed, Code: ota.CodeDownloadFailed, Message: "disk full"})
		if err != nil {
			t.Fatal(err)
		}
	}
	te.waitTask(task.ID, "two failed", func(t ota.Task) bool { return t.Counts[ota.JobFailed] == 2 })
	failed := te.allJobs(taskURL(task.ID, "jobs")+"?state=failed", 10)
	if len(failed) != 2 || failed[0].Code != ota.CodeDownloadFailed || failed[0].Message != "disk full" {
		t.Fatalf("failed jobs: %+v", failed)
	}

	var out api.RetriedTask
	te.ok(request{method: "POST", path: taskURL(task.ID, "retry-failed"), token: te.admin}, 200, &out)
	if out.Requeued != 2 || out.ID != task.ID {
		t.Errorf("retry-failed: %+v", out)
	}
	if out.State != ota.TaskRunning || out.Counts[ota.JobFailed] != 0 || out.Counts[ota.JobQueued] != 3 {
		t.Errorf("task after retry-failed: %s %v", out.State, out.Counts)
	}
	retried := te.allJobs(taskURL(task.ID, "jobs")+"?state=queued", 10)
	if len(retried) != 3 || retried[0].Attempt != 2 || retried[2].Attempt != 1 { // attempts count from 1
		t.Errorf("jobs after retry-failed: %+v", retried)
	}
}

func TestTaskValidation(t *testing.T) {
	te := newTaskEnv(t, 2)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name   string
		body   map[string]any
		status int
		want   string // in the detail or the field errors
	}{
		{"no target", te.task(map[string]any{}), 400, "selects no device"},
		{"percent alone", te.task(map[string]any{"percent": 10}), 400, "selects no device"},
		{"bad device key", te.task(map[string]any{"devices": []string{"d1", "a:b"}}), 400, "target device 2"},
		{"duplicate device", te.task(map[string]any{"devices": []string{"d1", "d1"}}), 400, "twice"},
		{"unknown device", te.task(map[string]any{"devices": []string{"d1", "zz"}}), 400, "zz"},
		{"percent over 100", te.task(map[string]any{"all": true, "percent": 150}), 400, "percent"},
		{"end in the past", te.task(map[string]any{"all": true}, "policy", map[string]any{"end": past}), 400, "in the past"},
		{"phases", te.task(map[string]any{"all": true}, "policy", map[string]any{"phases": []float64{10, 50}}), 400, "last phase"},
		{"bad gate", te.task(map[string]any{"all": true}, "policy", map[string]any{"phases": []float64{100}, "phase_gate": "sometimes"}), 400, "phase_gate"},
		{"bad window", te.task(map[string]any{"all": true}, "policy", map[string]any{"window": map[string]string{"start": "25:00", "end": "05:00"}}), 400, "window start"},
		{"bad backoff", te.task(map[string]any{"all": true}, "policy", map[string]any{"retries": 1, "retry_backoff": "soon"}), 422, "retry_backoff"},
		{"unknown policy field", te.task(map[string]any{"all": true}, "policy", map[string]any{"rat": 5}), 422, "rat"},
		{"bad mode", te.task(map[string]any{"all": true}, "mode", "pull"), 422, "mode"},
		{"bad confirm", te.task(map[string]any{"all": true}, "policy", map[string]any{"confirm": "sometimes"}), 422, "confirm"},
		{"boolean confirm", te.task(map[string]any{"all": true}, "policy", map[string]any{"confirm": true}), 422, "confirm"},
		{"unknown firmware", map[string]any{"firmware_id": 999999, "target": map[string]any{"all": true}}, 404, "999999"},
		{"long name", te.task(map[string]any{"all": true}, "name", strings.Repeat("n", 201)), 400, "task name is 201 bytes long: at most 200 are allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := te.do(request{method: "POST", path: "/api/v1/tasks", token: te.admin, body: tt.body})
			if resp.status != tt.status || !strings.Contains(string(resp.body), tt.want) {
				t.Errorf("status %d, want %d with %q: %s", resp.status, tt.status, tt.want, resp.body)
			}
		})
	}
	// A policy with several mistakes names them all.
	p := te.fails(request{method: "POST", path: "/api/v1/tasks", token: te.admin,
		body: te.task(map[string]any{"all": true}, "policy", map[string]any{"rate": -1, "abort_min": 3, "retries": 1000})}, 400, ota.EINVALID)
	var locations []string
	for _, fe := range p.Errors {
		locations = append(locations, fe.Location)
	}
	if want := []string{"body.policy.rate", "body.policy.retries", "body.policy.abort_min"}; !slices.Equal(locations, want) {
		t.Errorf("policy problems at %v, want %v: %+v", locations, want, p)
	}
	// Every rule of a task is checked at once, each problem at its field.
	p = te.fails(request{method: "POST", path: "/api/v1/tasks", token: te.admin, body: map[string]any{
		"firmware_id": te.fw.ID, "name": "a\u0007", "verification": true, "target": map[string]any{"percent": 10},
		"policy": map[string]any{"end": past, "window": map[string]string{"start": "01:00", "end": "05:00", "tz": "Nowhere"}},
	}}, 400, ota.EINVALID)
	locations = nil
	for _, fe := range p.Errors {
		locations = append(locations, fe.Location)
	}
	if want := []string{"body.name", "body.target", "body.target.devices", "body.policy.window.tz", "body.policy.end"}; !slices.Equal(locations, want) {
		t.Errorf("task problems at %v, want %v: %+v", locations, want, p)
	}
}

func TestTaskRoles(t *testing.T) {
	te := newTaskEnv(t, 2)
	task := te.create(te.task(map[string]any{"devices": []string{"d1"}}))
	viewer := te.token("dash", ota.RoleViewer)
	for _, path := range []string{"/api/v1/tasks", taskURL(task.ID, ""), taskURL(task.ID, "jobs"), "/api/v1/products/demo/devices/d1/jobs"} {
		te.ok(request{method: "GET", path: path, token: viewer}, 200, nil)
	}
	te.fails(request{method: "POST", path: "/api/v1/tasks", token: viewer, body: te.task(map[string]any{"devices": []string{"d2"}})}, 403, ota.EFORBIDDEN)
	for _, action := range []string{"pause", "resume", "cancel", "advance", "retry-failed"} {
		te.fails(request{method: "POST", path: taskURL(task.ID, action), token: viewer}, 403, ota.EFORBIDDEN)
	}
	te.fails(request{method: "GET", path: "/api/v1/tasks"}, 401, ota.EUNAUTHORIZED)
	operator := te.token("ops", ota.RoleOperator)
	te.ok(request{method: "POST", path: "/api/v1/tasks", token: operator, body: te.task(map[string]any{"devices": []string{"d2"}})}, 201, nil)
}

func TestTasksWithoutEngine(t *testing.T) {
	e := newEnv(t, 0)
	body := map[string]any{"firmware_id": 1, "target": map[string]any{"all": true}}
	p := e.fails(request{method: "POST", path: "/api/v1/tasks", token: e.admin, body: body}, 503, ota.EUNAVAILABLE)
	if !strings.Contains(p.Detail, "rollout engine is not running") {
		t.Errorf("problem %+v", p)
	}
	e.fails(request{method: "POST", path: "/api/v1/tasks/1/pause", token: e.admin}, 503, ota.EUNAVAILABLE)
	e.ok(request{method: "GET", path: "/api/v1/tasks", token: e.admin}, 200, nil)
}
