package api

import (
	"context"
	"encoding/csv"
	"io"
	"strconv"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// pagedJobs serves n jobs through ListJobs by keyset cursor and records
// the largest page asked for.
type pagedJobs struct {
	store.Store
	n, maxPage, pages int
}

func (p *pagedJobs) ListJobs(_ context.Context, _ store.JobFilter, pg store.Page) ([]ota.Job, string, error) {
	after, _ := strconv.Atoi(pg.After)
	p.maxPage, p.pages = max(p.maxPage, pg.Limit), p.pages+1
	var jobs []ota.Job
	for id := after + 1; id <= p.n && len(jobs) < pg.Limit; id++ {
		jobs = append(jobs, ota.Job{ID: int64(id), Device: "d" + strconv.Itoa(id), State: ota.JobQueued})
	}
	next := ""
	if after+len(jobs) < p.n {
		next = strconv.Itoa(after + len(jobs))
	}
	return jobs, next, nil
}

// The export follows the keyset pages to the end and never asks for more
// than a page, so its memory does not grow with the task.
func TestWriteJobsCSVPages(t *testing.T) {
	st := &pagedJobs{n: 2*store.MaxPageSize + 7}
	r, w := io.Pipe()
	go func() { w.CloseWithError(WriteJobsCSV(context.Background(), st, store.JobFilter{TaskID: 1}, w)) }()
	cr := csv.NewReader(r)
	n := -1
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n >= 0 && rec[0] != strconv.Itoa(n+1) {
			t.Fatalf("row %d is job %s", n+1, rec[0])
		}
		n++
	}
	if n != st.n || st.pages != 3 || st.maxPage != store.MaxPageSize {
		t.Errorf("%d rows in %d pages of at most %d, want %d rows", n, st.pages, st.maxPage, st.n)
	}
}
