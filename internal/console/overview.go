package console

import (
	"maps"
	"net/http"
	"net/url"
	"strconv"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// pageSize is the length of every list in the console.
const pageSize = 50

// pager links to the next page of a list and back to its first, keeping
// the list's filters. Lists page by keyset cursor, never by offset, so a
// page costs the same at the millionth device as at the first.
type pager struct {
	Next  string
	First string
}

func newPager(r *http.Request, next string) pager {
	return pagerAt(r.URL.Path, r.URL.Query(), next)
}

// pagerAt links the pages of the list at path whose current query is q.
func pagerAt(path string, q url.Values, next string) pager {
	var p pager
	on := q.Get("after") != ""
	q = maps.Clone(q)
	q.Del("done") // a notice belongs to the page it followed
	if next != "" {
		q.Set("after", next)
		p.Next = path + "?" + q.Encode()
	}
	if on {
		q.Del("after")
		p.First = path
		if len(q) > 0 {
			p.First += "?" + q.Encode()
		}
	}
	return p
}

// pageOf is the store page a request asks for.
func pageOf(r *http.Request, limit int) store.Page {
	return store.Page{Limit: limit, After: r.URL.Query().Get("after")}
}

// taskRow is a task with its progress bar.
type taskRow struct {
	ota.Task
	Bar      []segment
	Finished float64 // percentage of jobs ended
}

// Succeeded is the number of jobs that succeeded.
func (t taskRow) Succeeded() int64 { return t.Counts[ota.JobSucceeded] }

// FailedJobs is the number of failed and timed-out jobs, the ones a retry
// queues again.
func (t taskRow) FailedJobs() int64 { return t.Counts[ota.JobFailed] + t.Counts[ota.JobTimedOut] }

// Unreported is the number of targeted devices that have not reported a
// version yet: their jobs await the report.
func (t taskRow) Unreported() int64 { return t.Counts[ota.JobAwaitingVersion] }

// AwaitingConfirmation is the number of jobs whose devices downloaded the
// firmware and wait for their local confirmation to install it.
func (t taskRow) AwaitingConfirmation() int64 { return t.Counts[ota.JobAwaitingInstall] }

// stateCount is the number of a task's jobs in one state.
type stateCount struct {
	State ota.JobState
	N     int64
}

// StateCounts lists the job counts of every state, in lifecycle order.
func (t taskRow) StateCounts() []stateCount {
	out := make([]stateCount, len(ota.JobStates))
	for i, s := range ota.JobStates {
		out[i] = stateCount{s, t.Counts[s]}
	}
	return out
}

func newTaskRow(t ota.Task) taskRow {
	var ended int64
	for s, n := range t.Counts {
		if s.Terminal() {
			ended += n
		}
	}
	return taskRow{Task: t, Bar: progress(t), Finished: percent(ended, t.Total)}
}

func taskRows(tasks []ota.Task) []taskRow {
	rows := make([]taskRow, len(tasks))
	for i, t := range tasks {
		rows[i] = newTaskRow(t)
	}
	return rows
}

// overviewPage is the data of the overview.
type overviewPage struct {
	base
	Fleet    *fleet
	Charts   []barChart
	Active   activeTasks
	Failures []ota.Event
}

// activeTasks is the live list of tasks that have not ended.
type activeTasks struct {
	Tasks []taskRow
	More  bool
}

// maxOverviewTasks bounds the tasks the overview lists; the tasks page
// lists them all.
const maxOverviewTasks = 10

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	f, err := c.stats.get(ctx)
	if err != nil {
		return err
	}
	active, err := c.activeTasks(r)
	if err != nil {
		return err
	}
	failures, err := c.store.RecentFailures(ctx, 10)
	if err != nil {
		return err
	}
	data := &overviewPage{
		base:  c.base(s, "Overview", "overview"),
		Fleet: f, Charts: versionCharts(f.Versions), Active: active, Failures: failures,
	}
	c.render(w, r, http.StatusOK, "overview", data)
	return nil
}

func (c *Console) activeTasks(r *http.Request) (activeTasks, error) {
	f := store.TaskFilter{States: []ota.TaskState{ota.TaskScheduled, ota.TaskRunning, ota.TaskPaused}}
	tasks, next, err := c.store.ListTasks(r.Context(), f, store.Page{Limit: maxOverviewTasks})
	if err != nil {
		return activeTasks{}, err
	}
	return activeTasks{Tasks: taskRows(tasks), More: next != ""}, nil
}

// overviewTasks is the overview's list of active tasks, polled by htmx.
func (c *Console) overviewTasks(w http.ResponseWriter, r *http.Request, s *session) error {
	active, err := c.activeTasks(r)
	if err != nil {
		return err
	}
	c.fragment(w, r, "overview", "active", active)
	return nil
}

// base returns the frame of a page for the signed-in operator.
func (c *Console) base(s *session, title, section string) base {
	return base{Title: title, Section: section, User: s}
}

// pathID reads a numeric path parameter such as a task or firmware id.
func pathID(r *http.Request, name, what string) (int64, error) {
	v := r.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, notFoundf("there is no %s %q: %s ids are positive numbers", what, wire.Clip(v, maxQuoted), what)
	}
	return id, nil
}

// maxQuoted bounds operator input quoted in a message.
const maxQuoted = 64
