package api_test

import (
	"bytes"
	"encoding/csv"
	"strconv"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/ota"
)

// The CSV export parses and holds exactly the task's jobs, field for field.
func TestExportTaskJobsCSV(t *testing.T) {
	te := newTaskEnv(t, 4)
	task := te.create(te.task(map[string]any{"devices": []string{"d1", "d2", "d3"}}))
	te.waitTask(task.ID, "running", running)
	te.report("d1", "1.1.0")
	te.waitTask(task.ID, "one success", func(t ota.Task) bool { return t.Counts[ota.JobSucceeded] == 1 })

	resp := te.do(request{method: "GET", path: taskURL(task.ID, "jobs.csv"), token: te.admin})
	if resp.status != 200 || resp.header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("export: %d %v\n%s", resp.status, resp.header, resp.body)
	}
	rows, err := csv.NewReader(bytes.NewReader(resp.body)).ReadAll()
	if err != nil {
		t.Fatalf("the export does not parse: %v\n%s", err, resp.body)
	}
	jobs := te.allJobs(taskURL(task.ID, "jobs"), 2)
	if len(rows) != len(jobs)+1 || !equalRow(rows[0], api.JobsCSVHeader) {
		t.Fatalf("rows %v for %d jobs", rows, len(jobs))
	}
	for i, j := range jobs {
		if want := wantRecord(j); !equalRow(rows[i+1], want) {
			t.Errorf("row %d = %q\nwant     %q", i+1, rows[i+1], want)
		}
	}

	failed := te.do(request{method: "GET", path: taskURL(task.ID, "jobs.csv") + "?state=succeeded", token: te.admin})
	if rows, err := csv.NewReader(bytes.NewReader(failed.body)).ReadAll(); err != nil || len(rows) != 2 || rows[1][1] != "d1" {
		t.Errorf("succeeded only: %v %q", err, rows)
	}
	te.fails(request{method: "GET", path: taskURL(99, "jobs.csv"), token: te.admin}, 404, ota.ENOTFOUND)
	te.fails(request{method: "GET", path: taskURL(task.ID, "jobs.csv") + "?state=nope", token: te.admin}, 400, ota.EINVALID)
	te.fails(request{method: "GET", path: taskURL(task.ID, "jobs.csv")}, 401, ota.EUNAUTHORIZED)
}

func wantRecord(j ota.Job) []string {
	tm := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return []string{strconv.FormatInt(j.ID, 10), j.Device, string(j.State), strconv.Itoa(j.Phase.Number()), strconv.Itoa(j.Attempt),
		strconv.Itoa(j.Percent), j.Code, j.Message, j.FromVersion, j.Version, tm(&j.CreatedAt), tm(j.StartedAt), tm(&j.UpdatedAt)}
}

func equalRow(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
