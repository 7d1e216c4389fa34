package cli_test

import (
	"fmt"
	"strings"
	"testing"
)

// policyOf is what the CLI's JSON shows of a task's policy.
type policyOf struct {
	Policy struct {
		Rate          int            `json:"rate"`
		MaxConcurrent int            `json:"max_concurrent"`
		Retries       int            `json:"retries"`
		Timeout       string         `json:"timeout"`
		Start         *string        `json:"start"`
		End           *string        `json:"end"`
		Window        map[string]any `json:"window"`
		AbortFailure  float64        `json:"abort_failure"`
	} `json:"policy"`
}

func TestTaskUpdate(t *testing.T) {
	o, _, fw := startTaskOtter(t, 3)
	var created task
	o.json(&created, "task", "create", "--firmware", fw, "--all", "--start", "+1h", "--end", "+2h", "--rate", "10",
		"--window", "01:00-05:00", "--tz", "Europe/Paris", "--retries", "1")
	id := fmt.Sprint(created.ID)

	out := o.ok("task", "update", id, "--rate", "100", "--max-concurrent", "3", "--timeout", "5m", "--window", "none", "--abort-failure", "10%")
	if !strings.Contains(out, "max concurrent") {
		t.Errorf("task update prints the task:\n%s", out)
	}
	var got policyOf
	o.json(&got, "task", "show", id)
	p := got.Policy
	if p.Rate != 100 || p.MaxConcurrent != 3 || p.Timeout != "5m0s" || p.Window != nil || p.AbortFailure != 10 || p.Retries != 1 || p.Start == nil || p.End == nil {
		t.Fatalf("policy after update: %+v", p)
	}

	o.fails(2, "--phases cannot be changed", "task", "update", id, "--phases", "50%,100%")
	o.fails(2, "nothing to change", "task", "update", id)
	o.fails(1, "rate -1 must be between 0", "task", "update", id, "--rate", "-1")
	o.fails(1, "end", "task", "update", id, "--end", "+3h", "--start", "+4h")
	o.json(&got, "task", "show", id)
	if got.Policy.Rate != 100 || got.Policy.MaxConcurrent != 3 {
		t.Fatalf("refused updates changed the policy: %+v", got.Policy)
	}

	o.ok("task", "update", id, "--start", "none")
	o.waitTask(created.ID, func(t task) bool { return t.State == "running" })

	var events []struct {
		Actor  string            `json:"actor"`
		Action string            `json:"action"`
		Data   map[string]string `json:"data"`
	}
	o.json(&events, "events", "--task", id, "--kind", "task")
	var changes []map[string]string
	for _, e := range events {
		if e.Action == "policy_changed" {
			if e.Actor != "admin" {
				t.Errorf("policy change by %q, want admin", e.Actor)
			}
			changes = append(changes, e.Data)
		}
	}
	if len(changes) != 2 {
		t.Fatalf("policy_changed events: %v (all: %+v)", changes, events)
	}
	first := changes[0]
	if changes[1]["rate"] != "" {
		first = changes[1] // events are newest first
	}
	if first["rate"] != "10 -> 100" || first["max_concurrent"] != "- -> 3" || !strings.HasPrefix(first["window"], `{"start":"01:00"`) || !strings.HasSuffix(first["window"], "-> -") {
		t.Fatalf("the change records old -> new: %v", first)
	}
	o.fails(1, "phase_gate need phases", "task", "update", id, "--phase-gate", "manual")
	o.ok("task", "cancel", id)
	o.fails(1, "(409 conflict)", "task", "update", id, "--rate", "5")
}
