package store

import (
	"context"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
)

// The pages of a task's jobs read through the index that keeps them in id
// order and, for states of failure on SQLite, from the covering index
// jobs_task_failed alone: a row lookup per job (one table page each for
// sparse states) is what made a page of failed jobs cost 2 ms at
// 1,000,000 jobs. SQLite plans by rule, so its plan is fixed by the
// schema and the query's text, whatever the rows.
func TestJobPagePlans(t *testing.T) {
	st := openSQLite(t)
	tests := []struct {
		name   string
		filter JobFilter
		cols   string
		want   string
	}{
		{"no state", JobFilter{TaskID: 1}, st.jobCols(), "USING INDEX jobs_task (task_id=? AND id>?)"},
		{"queued", JobFilter{TaskID: 1, States: []ota.JobState{ota.JobQueued}}, st.jobCols(),
			"USING INDEX jobs_task_state (task_id=? AND state=? AND id>?)"},
		{"in flight", JobFilter{TaskID: 1, States: []ota.JobState{ota.JobDownloading}}, st.jobCols(),
			"USING INDEX jobs_task_state (task_id=? AND state=? AND id>?)"},
		{"failed", JobFilter{TaskID: 1, States: []ota.JobState{ota.JobFailed}}, st.jobCols(),
			"USING COVERING INDEX jobs_task_failed (task_id=? AND state=? AND id>?)"},
		{"timed out", JobFilter{TaskID: 1, States: []ota.JobState{ota.JobTimedOut}}, st.jobCols(),
			"USING COVERING INDEX jobs_task_failed (task_id=? AND state=? AND id>?)"},
		{"rejected, ids", JobFilter{TaskID: 1, States: []ota.JobState{ota.JobRejected}}, "j.id", "USING COVERING INDEX"},
		{"succeeded", JobFilter{TaskID: 1, States: []ota.JobState{ota.JobSucceeded}}, st.jobCols(),
			"USING INDEX jobs_task_state (task_id=? AND state=? AND id>?)"},
		{"cancelled", JobFilter{TaskID: 1, States: []ota.JobState{ota.JobCancelled}}, st.jobCols(),
			"USING INDEX jobs_task_state (task_id=? AND state=? AND id>?)"},
	}
	for _, tt := range tests {
		q, a := jobPageQuery(tt.filter, 0, 101, tt.cols, st.dialect)
		plan := explain(t, st, q, a)
		if !strings.Contains(plan, tt.want) || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s: plan %q, want %q and no sort", tt.name, plan, tt.want)
		}
	}
}

// failedStates, the condition of the partial index jobs_task_failed, and
// coveredState name the same states.
func TestFailedStates(t *testing.T) {
	var covered []string
	for _, st := range ota.JobStates {
		if coveredState(st) {
			covered = append(covered, "'"+string(st)+"'")
		}
	}
	if got := "(" + strings.Join(covered, ", ") + ")"; got != failedStates {
		t.Errorf("covered states %s, failedStates %s", got, failedStates)
	}
}

// TestSeveralStatesPlans checks the plan of a page of a task's jobs in
// several states: each state's ids from its index range, the rows by
// primary key in the order of the list of ids, and nothing sorted.
func TestSeveralStatesPlans(t *testing.T) {
	st := openSQLite(t)
	tests := []struct {
		name   string
		states []ota.JobState
		want   []string
	}{
		{"succeeded and failed", []ota.JobState{ota.JobFailed, ota.JobSucceeded}, []string{
			"SEARCH j USING INTEGER PRIMARY KEY (rowid=?)",
			"SEARCH j USING COVERING INDEX jobs_task_state (task_id=? AND state=? AND id>?)",
		}},
		{"in flight", []ota.JobState{ota.JobDownloading, ota.JobInstalling, ota.JobQueued}, []string{
			"SEARCH j USING INTEGER PRIMARY KEY (rowid=?)",
			"SEARCH j USING COVERING INDEX jobs_task_state (task_id=? AND state=? AND id>?)",
		}},
	}
	for _, tt := range tests {
		q, a := severalStatesQuery(JobFilter{TaskID: 1}, tt.states, 0, 101, st.jobCols(), st.dialect)
		plan := explain(t, st, q, a)
		for _, want := range tt.want {
			if !strings.Contains(plan, want) {
				t.Errorf("%s: plan %q, want %q", tt.name, plan, want)
			}
		}
		if strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "SCAN j") {
			t.Errorf("%s: plan %q sorts or scans the table", tt.name, plan)
		}
	}
}

func explain(t *testing.T, s *sqlStore, q string, a args) string {
	t.Helper()
	rows, err := s.db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, a...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}

// TestDeviceDetailsPlan checks that the one statement that reads a page of
// devices' tags and versions searches both tables by device, for a dense
// page (a range of ids) and a sparse one (a list), and scans neither.
func TestDeviceDetailsPlan(t *testing.T) {
	st := openSQLite(t)
	for _, ids := range [][]int64{{1, 2, 3}, {1, 100, 1000}} {
		var a args
		q := detailsQuery(&a, packedDetails.sql, ids)
		plan := explain(t, st, q, a)
		for _, want := range []string{"SEARCH device_tags USING INDEX", "SEARCH device_versions USING INDEX"} {
			if !strings.Contains(plan, want) {
				t.Errorf("ids %v: plan %q, want %q", ids, plan, want)
			}
		}
		if strings.Contains(plan, "SCAN") {
			t.Errorf("ids %v: plan %q scans a table", ids, plan)
		}
	}
}

// A page of a device's events reads its other events from the partial
// index events_device and its job events through its jobs (job_devices,
// events_job), and scans no table: the plan SQLite fixes by rule.
func TestDeviceEventPlan(t *testing.T) {
	st := openSQLite(t)
	for _, f := range []EventFilter{{Product: "p", Device: "d"}, {Product: "p", Device: "d", Kind: ota.KindJob}} {
		q, a := eventQuery(f, 42, 51, st.dialect)
		plan := explain(t, st, q, a)
		for _, want := range []string{"USING INDEX events_device (product=? AND device=? AND id<?)",
			"USING INDEX events_job (job_id=? AND id<?)", "job_devices USING PRIMARY KEY (device_id=?)",
			"former_devices_key (product=? AND key=?)"} {
			if !strings.Contains(plan, want) {
				t.Errorf("%+v: plan %q, want %q", f, plan, want)
			}
		}
		if strings.Contains(plan, "SCAN events") || strings.Contains(plan, "SCAN jobs") {
			t.Errorf("%+v: plan %q scans", f, plan)
		}
	}
}
