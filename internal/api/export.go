package api

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// JobsCSVHeader names the columns of a task's jobs export.
var JobsCSVHeader = []string{"job_id", "device", "state", "phase", "attempt", "percent", "code", "message",
	"from_version", "to_version", "created_at", "started_at", "updated_at"}

// WriteJobsCSV writes the jobs f selects as CSV, one store page at a time
// (keyset paging), so a task of 1,000,000 jobs never sits in memory.
func WriteJobsCSV(ctx context.Context, st store.Store, f store.JobFilter, w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(JobsCSVHeader); err != nil {
		return err
	}
	page := store.Page{Limit: store.MaxPageSize}
	for {
		jobs, next, err := st.ListJobs(ctx, f, page)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if err := cw.Write(jobRecord(j)); err != nil {
				return err
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil || next == "" {
			return err
		}
		page.After = next
	}
}

func jobRecord(j ota.Job) []string {
	return []string{strconv.FormatInt(j.ID, 10), j.Device, string(j.State), strconv.Itoa(j.Phase.Number()),
		strconv.Itoa(j.Attempt), strconv.Itoa(j.Percent), j.Code, j.Message, j.FromVersion, j.Version,
		csvTime(&j.CreatedAt), csvTime(j.StartedAt), csvTime(&j.UpdatedAt)}
}

func csvTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

type exportTaskJobsInput struct {
	ID    int64    `path:"id" doc:"Task id."`
	State []string `query:"state,explode" doc:"Only jobs in this state; repeat for several."`
}

func (a *API) exportRoutes() {
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "export-task-jobs", Method: http.MethodGet, Path: Prefix + "/tasks/{id}/jobs.csv",
		Summary: "Export a task's jobs as CSV", Tags: []string{"tasks"},
		Description: "Every job of the task in job id order, streamed: columns " + fmt.Sprint(JobsCSVHeader) +
			"; times in RFC 3339 UTC, empty when unset.",
		Responses: map[string]*huma.Response{"200": {Description: "CSV", Content: map[string]*huma.MediaType{"text/csv": {}}}},
	}, a.exportTaskJobs)
}

// exportTaskJobs checks the task and the states before the first byte, so
// a bad request still gets a problem rather than a half-written CSV.
func (a *API) exportTaskJobs(ctx context.Context, in *exportTaskJobsInput) (*huma.StreamResponse, error) {
	states, err := parseStates(in.State, ota.JobStates)
	if err != nil {
		return nil, err
	}
	if _, err := a.store.GetTask(ctx, in.ID); err != nil {
		return nil, err
	}
	f := store.JobFilter{TaskID: in.ID, States: states}
	return &huma.StreamResponse{Body: func(hc huma.Context) {
		hc.SetHeader("Content-Type", "text/csv; charset=utf-8")
		hc.SetHeader("Content-Disposition", fmt.Sprintf(`attachment; filename="task-%d-jobs.csv"`, in.ID))
		if err := WriteJobsCSV(hc.Context(), a.store, f, hc.BodyWriter()); err != nil {
			a.log.WarnContext(ctx, "export task jobs", "task", in.ID, "err", err)
		}
	}}, nil
}
