package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// TestAttemptsAndPhasesCountFromOne: the API numbers a job's attempts and a
// task's phases from 1, as the device protocol numbers attempts, and a job
// that failed after its download does not show 100%.
func TestAttemptsAndPhasesCountFromOne(t *testing.T) {
	te := newTaskEnv(t, 2)
	task := te.create(te.task(map[string]any{"all": true}, "policy",
		map[string]any{"phases": []float64{50, 100}, "phase_gate": "manual", "retries": 1}))
	te.waitTask(task.ID, "running", running)
	raw := func(path string) map[string]any {
		t.Helper()
		resp := te.do(request{method: "GET", path: path, token: te.admin})
		var m map[string]any
		if resp.status != http.StatusOK || json.Unmarshal(resp.body, &m) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.status, resp.body)
		}
		return m
	}
	if got := raw(taskURL(task.ID, ""))["phase"]; got != 1.0 {
		t.Errorf("a new task is in phase %v, want 1", got)
	}
	jobs := raw(taskURL(task.ID, "jobs"))["items"].([]any)
	phases := map[float64]int{}
	for _, j := range jobs {
		j := j.(map[string]any)
		phases[j["phase"].(float64)]++
		if j["attempt"] != 1.0 {
			t.Errorf("job %v is at attempt %v before any retry, want 1", j["id"], j["attempt"])
		}
	}
	if phases[1] != 1 || phases[2] != 1 {
		t.Errorf("jobs per phase %v, want one in phase 1 and one in phase 2", phases)
	}

	// The first phase's job fails after its download, and is retried.
	first := te.allJobs(taskURL(task.ID, "jobs"), 10)[0]
	id := strconv.FormatInt(first.ID, 10)
	for _, p := range []wire.Progress{
		{Job: id, Attempt: 1, State: wire.StateDownloaded},
		{Job: id, Attempt: 1, State: wire.StateFailed, Code: wire.FailInstall},
	} {
		if _, err := te.eng.Progress(context.Background(), te.devs[first.Device], p); err != nil {
			t.Fatal(err)
		}
	}
	te.waitTask(task.ID, "the retry", func(t ota.Task) bool { return t.Counts[ota.JobQueued] == 2 })
	j := raw("/api/v1/jobs/" + id)
	if j["attempt"] != 2.0 || j["percent"] != 0.0 {
		t.Errorf("retried job: attempt %v percent %v, want attempt 2 at 0%%", j["attempt"], j["percent"])
	}
	var events struct{ Items []ota.Event }
	te.ok(request{method: "GET", path: "/api/v1/events?job=" + id, token: te.admin}, 200, &events)
	seen := map[string]string{}
	for _, e := range events.Items {
		seen[e.Action] = e.Message + " attempt=" + e.Data["attempt"]
	}
	if seen["failed"] != " attempt=1" || seen["retry_scheduled"][:9] != "attempt 2" {
		t.Errorf("job events %v; want the failure of attempt 1 and the retry as attempt 2", seen)
	}
	te.act(task.ID, "advance", 200)
	if got := raw(taskURL(task.ID, ""))["phase"]; got != 2.0 {
		t.Errorf("after advance the task is in phase %v, want 2", got)
	}
}
