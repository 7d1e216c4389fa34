package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// taskPage is the data of a task's page; Live is the part that htmx
// refreshes every two seconds while the task has not ended.
type taskPage struct {
	base
	Task     ota.Task
	Firmware ota.Firmware
	Filter   *form
	Live     *taskLive
	// Edit holds the policy edit form's values.
	Edit *form
}

// taskLive is everything on a task's page that changes as it runs.
type taskLive struct {
	Task      taskRow
	CanAct    bool
	Phases    []phaseRow
	Timeline  timeline
	Failures  []store.FailureCount
	Jobs      []ota.Job
	Pager     pager
	Notice    string
	ActionErr string
	PollEvery string
	query     url.Values
}

// phaseRow is one phase of a task: its share of the target and its counts.
type phaseRow struct {
	Index     int
	Percent   float64
	Jobs      int64
	Succeeded int64
	Failed    int64
	Current   bool
	Released  bool
}

// pollEvery is how often a task's page refreshes its live part.
const pollEvery = "2s"

func (c *Console) task(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showTask(w, r, s, http.StatusOK, "", "")
}

func (c *Console) showTask(w http.ResponseWriter, r *http.Request, s *session, status int, notice, actionErr string) error {
	ctx := r.Context()
	live, err := c.loadLive(r, s)
	if err != nil {
		return err
	}
	live.Notice, live.ActionErr = notice, actionErr
	fw, err := c.store.GetFirmware(ctx, live.Task.FirmwareID)
	if err != nil && ota.ErrorCode(err) != ota.ENOTFOUND {
		return err
	}
	t := live.Task.Task
	data := &taskPage{
		base: c.base(s, taskTitle(t)+" · Tasks", "tasks"), Task: t, Firmware: fw,
		Filter: newForm(r.URL.Query()), Live: live, Edit: newForm(policyForm(t.Policy)),
	}
	c.render(w, r, status, "task", data)
	return nil
}

func taskTitle(t ota.Task) string {
	if t.Name != "" {
		return fmt.Sprintf("Task %d: %s", t.ID, t.Name)
	}
	return fmt.Sprintf("Task %d", t.ID)
}

// loadLive reads the live part of a task page.
func (c *Console) loadLive(r *http.Request, s *session) (*taskLive, error) {
	ctx := r.Context()
	id, err := pathID(r, "id", "task")
	if err != nil {
		return nil, err
	}
	t, err := c.store.GetTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.State == ota.TaskScheduled || t.State == ota.TaskRunning {
		if t.Waiting, err = c.waiting(ctx, s, t.ID); err != nil {
			return nil, err
		}
	}
	live := &taskLive{Task: newTaskRow(t), CanAct: s.can(ota.RoleOperator), PollEvery: pollEvery, query: jobQuery(r)}
	if live.Phases, err = c.phaseRows(ctx, t); err != nil {
		return nil, err
	}
	if live.Timeline, err = c.timelineOf(ctx, t); err != nil {
		return nil, err
	}
	if live.Failures, err = c.store.TaskFailures(ctx, id); err != nil {
		return nil, err
	}
	return live, c.jobPage(r, t.ID, live)
}

// waiting asks the API what a live task waits for: the engine knows it,
// the store does not.
func (c *Console) waiting(ctx context.Context, s *session, id int64) (*ota.Waiting, error) {
	t, err := c.client(s).Task(ctx, id)
	if err != nil || t.Waiting == nil {
		return nil, err
	}
	w := ota.Waiting(*t.Waiting)
	return &w, nil
}

// jobQuery is the part of a task page's query that the live part, the
// buttons and the pager keep: the job table's filter and page.
func jobQuery(r *http.Request) url.Values {
	q := url.Values{}
	for _, k := range []string{"state", "after"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// link returns path with the job table's query.
func (l *taskLive) link(path string) string {
	if len(l.query) == 0 {
		return path
	}
	return path + "?" + l.query.Encode()
}

// LiveURL is where the live part polls.
func (l *taskLive) LiveURL() string { return l.link(taskURL(l.Task.ID) + "/live") }

// Action is where a button posts.
func (l *taskLive) Action(name string) string { return l.link(taskURL(l.Task.ID) + "/" + name) }

// Polling reports whether the page should keep refreshing: until the task
// has ended.
func (l *taskLive) Polling() bool { return !l.Task.State.Terminal() }

func (c *Console) jobPage(r *http.Request, taskID int64, live *taskLive) error {
	filter := store.JobFilter{TaskID: taskID}
	if st := ota.JobState(r.URL.Query().Get("state")); st != "" {
		if !st.Valid() {
			return ota.Errorf(ota.EINVALID, "there is no job state %q: choose one from the list", wire.Clip(string(st), maxQuoted))
		}
		filter.States = []ota.JobState{st}
	}
	jobs, next, err := c.store.ListJobs(r.Context(), filter, pageOf(r, pageSize))
	if err != nil {
		return err
	}
	live.Jobs = jobs
	live.Pager = pagerAt(taskURL(taskID), live.query, next)
	return nil
}

func (c *Console) phaseRows(ctx context.Context, t ota.Task) ([]phaseRow, error) {
	if len(t.Policy.Phases) == 0 {
		return nil, nil
	}
	counts, err := c.store.TaskPhaseCounts(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	rows := make([]phaseRow, len(t.Policy.Phases))
	for i, pct := range t.Policy.Phases {
		row := phaseRow{Index: ota.PhaseIndex(i).Number(), Percent: pct, Current: i == int(t.Phase), Released: i <= int(t.Phase)}
		for st, n := range counts[i] {
			row.Jobs += n
			switch st {
			case ota.JobSucceeded:
				row.Succeeded += n
			case ota.JobFailed, ota.JobTimedOut:
				row.Failed += n
			}
		}
		rows[i] = row
	}
	return rows, nil
}

// timelineWindow is the longest stretch of a task's history the chart
// shows: the store keeps 30 days of minutes per read.
const timelineWindow = 30 * 24 * time.Hour

func (c *Console) timelineOf(ctx context.Context, t ota.Task) (timeline, error) {
	start := t.CreatedAt
	if t.StartedAt != nil {
		start = *t.StartedAt
	}
	end := c.now()
	if t.EndedAt != nil {
		end = *t.EndedAt
	}
	// The store keeps a task's first minutes per second: a task that ran
	// no longer is charted per second.
	if end.Sub(start) < ota.TimelineSecondsSpan {
		points, err := c.store.TaskSeconds(ctx, t.ID)
		if err != nil {
			return timeline{}, err
		}
		return newTimeline(points, start, end, time.Second), nil
	}
	start = maxTime(start, end.Add(-timelineWindow))
	points, err := c.store.TaskTimeline(ctx, t.ID, start.Truncate(time.Minute))
	if err != nil {
		return timeline{}, err
	}
	return newTimeline(points, start, end, time.Minute), nil
}

// taskLiveFragment answers the poll with the live part only.
func (c *Console) taskLiveFragment(w http.ResponseWriter, r *http.Request, s *session) error {
	live, err := c.loadLive(r, s)
	if err != nil {
		return err
	}
	c.fragment(w, r, "task", "live", live)
	return nil
}

// taskActions are the operator's buttons on a task, each an API call.
var taskActions = map[string]func(api *client.Client, ctx context.Context, id int64) (string, error){
	"pause": func(api *client.Client, ctx context.Context, id int64) (string, error) {
		_, err := api.PauseTask(ctx, id)
		return "Task paused: no new job starts; jobs in flight go on.", err
	},
	"resume": func(api *client.Client, ctx context.Context, id int64) (string, error) {
		_, err := api.ResumeTask(ctx, id)
		return "Task resumed.", err
	},
	"cancel": func(api *client.Client, ctx context.Context, id int64) (string, error) {
		_, err := api.CancelTask(ctx, id)
		return "Task cancelled: queued jobs were cancelled.", err
	},
	"advance": func(api *client.Client, ctx context.Context, id int64) (string, error) {
		t, err := api.AdvanceTask(ctx, id)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Phase %d released.", t.Phase), nil
	},
	"retry": func(api *client.Client, ctx context.Context, id int64) (string, error) {
		t, err := api.RetryFailed(ctx, id)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s queued again.", ota.Plural(t.Requeued, "failed or timed-out job", "failed or timed-out jobs")), nil
	},
}

// deviceActions are the buttons on one job of a task: they act on that
// job's device only.
var deviceActions = map[string]func(api *client.Client, ctx context.Context, id int64, device string) (string, error){
	"cancel-device": func(api *client.Client, ctx context.Context, id int64, device string) (string, error) {
		t, err := api.CancelDevices(ctx, id, []string{device})
		switch {
		case err != nil:
			return "", err
		case t.Cancelled == 0:
			return fmt.Sprintf("The job of %s was not cancelled: it is installing, rebooting or has ended.", device), nil
		}
		return fmt.Sprintf("The job of %s was cancelled.", device), nil
	},
	"retry-device": func(api *client.Client, ctx context.Context, id int64, device string) (string, error) {
		t, err := api.RetryFailedDevices(ctx, id, []string{device})
		switch {
		case err != nil:
			return "", err
		case t.Requeued == 0:
			return fmt.Sprintf("The job of %s was not queued again: it has not failed, or its device runs the version already.", device), nil
		}
		return fmt.Sprintf("The job of %s was queued again.", device), nil
	},
}

// runTaskAction runs the task or job action the path names, as the
// session's operator.
func (c *Console) runTaskAction(r *http.Request, s *session, id int64) (string, error) {
	name := r.PathValue("action")
	if act, ok := deviceActions[name]; ok {
		return act(c.client(s), r.Context(), id, r.FormValue("device"))
	}
	return taskActions[name](c.client(s), r.Context(), id)
}

// jobButton is the action button on one job's row.
type jobButton struct {
	URL, Name, Device, Label string
}

// JobAction returns the button a job's row offers, or nil: retry for a
// failed or timed-out job of a task that may still run it, cancel for a
// job whose device has not started installing.
func (l *taskLive) JobAction(j ota.Job) *jobButton {
	b := func(name, label string) *jobButton {
		return &jobButton{URL: l.Action(name), Name: name, Device: j.Device, Label: label}
	}
	switch s := l.Task.State; {
	case !l.CanAct:
		return nil
	case j.State == ota.JobFailed || j.State == ota.JobTimedOut:
		if s == ota.TaskCancelled || s == ota.TaskAborted {
			return nil
		}
		return b("retry-device", "Retry")
	case j.State == ota.JobQueued || j.State == ota.JobAwaitingVersion || slices.Contains(withdrawableStates, j.State):
		return b("cancel-device", "Cancel")
	}
	return nil
}

// withdrawableStates are the in-flight states a device's job can still be
// cancelled in: it has not started installing.
var withdrawableStates = []ota.JobState{ota.JobNotified, ota.JobOffered, ota.JobAccepted, ota.JobDownloading, ota.JobDownloaded}

// taskAction runs an operator's button. To htmx it answers the live part
// with the outcome next to the buttons; to a plain form post, the page.
func (c *Console) taskAction(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := pathID(r, "id", "task")
	if err != nil {
		return err
	}
	name := r.PathValue("action")
	if taskActions[name] == nil && deviceActions[name] == nil {
		return notFoundf("there is no task action %q: use pause, resume, cancel, advance, retry, cancel-device or retry-device", wire.Clip(name, maxQuoted))
	}
	notice, err := c.runTaskAction(r, s, id)
	if refused(err) {
		return err
	}
	actionErr := ""
	if err != nil {
		notice, actionErr = "", messageOf(err)
	}
	if !isHTMX(r) {
		status := http.StatusOK
		if err != nil {
			status = statusOf(err)
		}
		return c.showTask(w, r, s, status, notice, actionErr)
	}
	live, lerr := c.loadLive(r, s)
	if lerr != nil {
		return lerr
	}
	live.Notice, live.ActionErr = notice, actionErr
	c.fragment(w, r, "task", "live", live)
	return nil
}

func taskURL(id int64) string { return "/tasks/" + strconv.FormatInt(id, 10) }
