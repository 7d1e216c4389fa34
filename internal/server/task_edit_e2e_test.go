package server_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
)

// A lower max_concurrent on a running task holds from the moment the jobs
// in flight drain under it; the change is an event naming its author.
func TestLowerMaxConcurrentOnARunningTask(t *testing.T) {
	o := start(t)
	ctx := o.ctx()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	o.fleet(ctx, "demo", 24, func(c *sim.Config) { c.InstallTime = 400 * time.Millisecond })
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Policy: client.Policy{MaxConcurrent: 8}})
	o.eventually(func() bool { return inFlight(o.taskNow(ctx, task.ID)) >= 4 }, "jobs to be in flight")

	got, err := o.api.UpdateTask(ctx, task.ID, map[string]any{"max_concurrent": 2})
	if err != nil {
		t.Fatal(err)
	}
	if got.Policy.MaxConcurrent != 2 {
		t.Fatalf("policy after update: %+v", got.Policy)
	}
	o.eventually(func() bool { return inFlight(o.taskNow(ctx, task.ID)) <= 2 }, "the jobs in flight to drain under the new cap")
	stop := o.sampleInFlight(ctx, task.ID)
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	if peak := stop(); peak > 2 {
		t.Fatalf("%d jobs in flight after max_concurrent was lowered to 2", peak)
	}
	evs := o.events(ctx, client.EventFilter{Task: task.ID, Kind: "task"})
	var changed []client.Event
	for _, e := range evs {
		if e.Action == "policy_changed" {
			changed = append(changed, e)
		}
	}
	if len(changed) != 1 || changed[0].Actor != "admin" || changed[0].Data["max_concurrent"] != "8 -> 2" {
		t.Fatalf("policy_changed events: %+v", changed)
	}
}

// A raised rate takes effect at once; a new end time ends the task; bad
// changes are refused and change nothing.
func TestRaiseRateChangeEndAndRefusals(t *testing.T) {
	o := start(t)
	ctx := o.ctx()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	o.fleet(ctx, "demo", 6, func(c *sim.Config) { c.Prefix = "dev-" })
	// One job a minute: after the first, nothing starts for a minute.
	slow := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"dev-00001", "dev-00002", "dev-00003"}}, Policy: client.Policy{Rate: 1}})
	o.eventually(func() bool { return o.taskNow(ctx, slow.ID).Counts[client.JobSucceeded] == 1 }, "the first job to succeed")
	before := o.taskNow(ctx, slow.ID)

	for _, bad := range []map[string]any{
		{"rate": -5},
		{"max_concurrent": "many"},
		{"phases": []float64{50, 100}},
		{"end": time.Now().Add(-time.Hour).Format(time.RFC3339)},
		{"rate_growth": 2}, // needs rate_growth_every
	} {
		_, err := o.api.UpdateTask(ctx, slow.ID, bad)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest && ce.Status != http.StatusUnprocessableEntity {
			t.Fatalf("update %v: %v, want 400", bad, err)
		}
	}
	if after := o.taskNow(ctx, slow.ID); !reflect.DeepEqual(after.Policy, before.Policy) {
		t.Fatalf("refused updates changed the policy: %+v -> %+v", before.Policy, after.Policy)
	}

	if _, err := o.api.UpdateTask(ctx, slow.ID, map[string]any{"rate": 6000}); err != nil {
		t.Fatal(err)
	}
	o.waitTask(ctx, slow.ID, client.TaskCompleted) // the other two start at once

	// A task starting in an hour, whose start is removed: it runs now.
	later := time.Now().Add(time.Hour)
	sched := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"dev-00004"}}, Policy: client.Policy{Start: &later}})
	if _, err := o.api.UpdateTask(ctx, sched.ID, map[string]any{"start": nil, "rate": 1}); err != nil {
		t.Fatal(err)
	}
	// A task at one job a minute whose end is brought forward: the job
	// still queued is cancelled when the end comes.
	ending := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"dev-00005", "dev-00006"}}, Policy: client.Policy{Rate: 1}})
	o.eventually(func() bool { return o.taskNow(ctx, ending.ID).Counts[client.JobSucceeded] == 1 }, "the first job to succeed")
	end := time.Now().Add(1500 * time.Millisecond)
	if _, err := o.api.UpdateTask(ctx, ending.ID, map[string]any{"end": end.Format(time.RFC3339Nano)}); err != nil {
		t.Fatal(err)
	}
	done := o.waitTask(ctx, ending.ID, client.TaskCompleted)
	if done.Counts[client.JobCancelled] != 1 || done.Counts[client.JobSucceeded] != 1 {
		t.Fatalf("task whose end was brought forward: counts %v, want 1 succeeded and 1 cancelled", done.Counts)
	}
	o.waitTask(ctx, sched.ID, client.TaskCompleted) // its start was removed

	_, err := o.api.UpdateTask(ctx, slow.ID, map[string]any{"rate": 10})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict || !strings.Contains(ce.Detail, "completed") {
		t.Fatalf("update of a completed task: %v, want 409", err)
	}
}
