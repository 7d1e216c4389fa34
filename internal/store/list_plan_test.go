package store

import (
	"context"
	"path/filepath"
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
	ctx := context.Background()
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "otter.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	st := s.(*sqlStore)
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
