package client

import (
	"context"
	"fmt"
	"io"
	"iter"
	"net/url"
	"strconv"
	"time"
)

// Mode is how a task delivers its firmware.
type Mode string

// Upgrade modes.
const (
	ModePush    Mode = "push"    // the server sends the upgrade command
	ModeRequest Mode = "request" // devices ask, the server offers
)

// TaskState is where a task is in its lifecycle:
// scheduled -> running <-> paused -> completed | cancelled | aborted.
type TaskState string

// Task states.
const (
	TaskScheduled TaskState = "scheduled"
	TaskRunning   TaskState = "running"
	TaskPaused    TaskState = "paused"
	TaskCompleted TaskState = "completed"
	TaskCancelled TaskState = "cancelled"
	TaskAborted   TaskState = "aborted"
)

// Terminal reports whether a task in s can no longer change (unless its
// failed jobs are retried).
func (s TaskState) Terminal() bool {
	return s == TaskCompleted || s == TaskCancelled || s == TaskAborted
}

// JobState is where one device's part of a task is.
type JobState string

// Job states, in the order a successful job passes through them.
const (
	// JobAwaitingVersion: the device has never reported its version; the
	// job waits for the report, then is queued, succeeds, or is cancelled
	// as version_not_eligible.
	JobAwaitingVersion JobState = "awaiting_version"
	JobQueued          JobState = "queued"
	JobNotified        JobState = "notified"
	JobOffered         JobState = "offered"
	JobAccepted        JobState = "accepted"
	JobDownloading     JobState = "downloading"
	JobDownloaded      JobState = "downloaded"
	// JobAwaitingInstall: downloaded and verified; the device waits for its
	// local confirmation before it activates the new image.
	JobAwaitingInstall JobState = "awaiting_install_confirmation"
	JobInstalling      JobState = "installing"
	JobRebooting       JobState = "rebooting"
	JobSucceeded       JobState = "succeeded"
	JobFailed          JobState = "failed"
	JobRejected        JobState = "rejected"
	JobTimedOut        JobState = "timed_out"
	JobCancelled       JobState = "cancelled"
)

// JobStates lists every job state in lifecycle order.
var JobStates = []JobState{
	JobAwaitingVersion, JobQueued, JobNotified, JobOffered, JobAccepted, JobDownloading, JobDownloaded,
	JobAwaitingInstall, JobInstalling, JobRebooting, JobSucceeded, JobFailed, JobRejected, JobTimedOut, JobCancelled,
}

// Terminal reports whether s ends a job.
func (s JobState) Terminal() bool {
	switch s {
	case JobSucceeded, JobFailed, JobRejected, JobTimedOut, JobCancelled:
		return true
	}
	return false
}

// Task is a batch upgrade: one firmware, a target selection, a mode and a
// policy.
type Task struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Product    string `json:"product"`
	Module     string `json:"module"`
	FirmwareID int64  `json:"firmware_id"`
	Version    string `json:"version"` // the firmware's version
	// Verification marks a task that proves a verify-required firmware.
	Verification bool      `json:"verification"`
	Mode         Mode      `json:"mode"`
	State        TaskState `json:"state"`
	Policy       Policy    `json:"policy"`
	Target       Target    `json:"target"`
	// Phase is the number of the phase now released, from 1 (Policy.Phases
	// [Phase-1]); a task without phases is in phase 1.
	Phase int `json:"phase"`
	// Counts holds the number of jobs in each state.
	Counts map[JobState]int64 `json:"counts"`
	Total  int64              `json:"total"`
	// Reason says why a task ended, or what its completion proved.
	Reason string `json:"reason,omitempty"`
	// Waiting says what a scheduled or running task that starts no job
	// waits for, and until when; nil when its policy holds nothing back.
	Waiting   *Waiting   `json:"waiting,omitempty"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

// Waiting is what a task waits for: its start time, its daily window, its
// rate limit, its concurrency limit, or a phase gate.
type Waiting struct {
	// Reason is before_start, window_closed, rate, concurrency or
	// phase_gate.
	Reason string `json:"reason"`
	// Until is when the task resumes by itself, in TimeZone; nil when an
	// event resumes it (a job ends, an operator advances the phase).
	Until    *time.Time `json:"until,omitempty"`
	TimeZone string     `json:"time_zone"`
	// Message says it in words.
	Message string `json:"message"`
}

// Target selects the devices of a task; its fields narrow one another.
type Target struct {
	// All selects every device of the product that the firmware may
	// upgrade.
	All          bool              `json:"all,omitempty"`
	Devices      []string          `json:"devices,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	FromVersions []string          `json:"from_versions,omitempty"`
	// Percent keeps a stable sample of the matching devices (0 < p <= 100).
	Percent float64 `json:"percent,omitempty"`
	// Seed makes the sample and rollout order differ between tasks; the
	// server sets one per firmware when it is empty.
	Seed string `json:"seed,omitempty"`
	// Dynamic tasks also take devices that come to match while they run.
	Dynamic bool `json:"dynamic,omitempty"`
	// SkipBusy leaves out devices another task is upgrading instead of
	// refusing the task.
	SkipBusy bool `json:"skip_busy,omitempty"`
}

// Policy governs how a task runs; every field is optional.
type Policy struct {
	Start *time.Time `json:"start,omitempty"`
	End   *time.Time `json:"end,omitempty"`
	// Window restricts job starts to a daily maintenance window.
	Window *Window `json:"window,omitempty"`
	// Rate is the maximum number of jobs started per minute (0: unlimited).
	Rate int `json:"rate,omitempty"`
	// RateGrowth multiplies Rate each time RateGrowthEvery more jobs have
	// succeeded.
	RateGrowth      float64 `json:"rate_growth,omitempty"`
	RateGrowthEvery int     `json:"rate_growth_every,omitempty"`
	// MaxConcurrent caps the jobs in flight (0: unlimited).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// Phases are cumulative percentages of the target, e.g. [1, 10, 100].
	Phases []float64 `json:"phases,omitempty"`
	// PhaseSuccess is the success percentage a phase must reach before the
	// next one opens.
	PhaseSuccess float64 `json:"phase_success,omitempty"`
	// PhaseGate is "auto" (the default) or "manual" (AdvanceTask).
	PhaseGate string `json:"phase_gate,omitempty"`
	Retries   int    `json:"retries,omitempty"`
	// RetryBackoff is the delay before a retry, doubled on each attempt.
	RetryBackoff Duration `json:"retry_backoff,omitempty"`
	// RetryOn lists the failure codes worth retrying; empty means all.
	RetryOn []string `json:"retry_on,omitempty"`
	// Timeout bounds the time a job may stay in flight.
	Timeout Duration `json:"timeout,omitempty"`
	// AbortFailure is the failure percentage among at least AbortMin
	// finished jobs at which the task is aborted.
	AbortFailure float64 `json:"abort_failure,omitempty"`
	AbortMin     int     `json:"abort_min,omitempty"`
	// Confirm says where devices ask for a local confirmation: "none" (or
	// empty, the default), "download" (before downloading), "install"
	// (after the verified download, before activating) or "both".
	Confirm string `json:"confirm,omitempty"`
}

// Window is a daily time range in a time zone, e.g. 01:00-05:00
// Europe/Paris; an end before the start crosses midnight.
type Window struct {
	Start string `json:"start"` // HH:MM
	End   string `json:"end"`   // HH:MM
	TZ    string `json:"tz,omitempty"`
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("30s", "10m"), as the API does.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// Job is one device's part of a task. Code and Message are always written,
// so that every job of a list has the same fields.
type Job struct {
	ID      int64    `json:"id"`
	TaskID  int64    `json:"task_id"`
	Device  string   `json:"device"`
	Product string   `json:"product"`
	Module  string   `json:"module"`
	State   JobState `json:"state"`
	// Percent is the download's progress while the job is in flight; 100
	// when it succeeded, 0 when it ended any other way.
	Percent int `json:"percent"`
	// Attempt counts the job's tries from 1, as the device protocol does.
	Attempt int `json:"attempt"`
	// Code is the failure code of a failed, timed-out or cancelled job.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Phase is the number of the task phase the job belongs to, from 1.
	Phase int `json:"phase"`
	// FromVersion is the version the device ran when the job was made.
	FromVersion string     `json:"from_version,omitempty"`
	Version     string     `json:"version"` // the target version
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	// Deadline is when an in-flight job times out.
	Deadline *time.Time `json:"deadline,omitempty"`
	// NextAttemptAt delays a retried job until its backoff has passed.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// SentAt is when the upgrade command or offer was last sent.
	SentAt *time.Time `json:"sent_at,omitempty"`
}

// TaskCreate is the body of CreateTask and PreviewTask.
type TaskCreate struct {
	Name       string `json:"name,omitempty"`
	FirmwareID int64  `json:"firmware_id"`
	// Mode defaults to push on the server.
	Mode Mode `json:"mode,omitempty"`
	// Verification makes a verification task: an explicit device list that
	// proves a verify-required firmware before batch tasks may use it.
	Verification bool   `json:"verification,omitempty"`
	Target       Target `json:"target"`
	Policy       Policy `json:"policy"`
}

// TaskPreview is one page of a dry run: what a task would target.
type TaskPreview struct {
	// Total counts every device the task would target.
	Total int `json:"total"`
	// Devices is one page of them, in rollout order.
	Devices []string `json:"devices"`
	// Next is the cursor of the next page of devices; "" on the last.
	Next string `json:"next"`
	// PerPhase counts the devices of each phase.
	PerPhase []int `json:"per_phase,omitempty"`
	// Busy lists (at most 1000) devices left out by SkipBusy because
	// another task is upgrading them; BusyTotal counts them all.
	Busy      []string `json:"busy,omitempty"`
	BusyTotal int      `json:"busy_total,omitempty"`
	// Unreported counts the targeted devices that have never reported a
	// version of the module: their jobs await the report.
	Unreported int `json:"unreported"`
}

// RetriedTask is a task after RetryFailed, with the number of jobs put back
// in the queue.
type RetriedTask struct {
	Task
	Requeued int `json:"requeued"`
}

// TaskFilter narrows a task list. Zero fields do not filter.
type TaskFilter struct {
	Product    string
	FirmwareID int64
	// States keeps tasks in any of these states.
	States []TaskState
}

// CreateTask creates a task. The server answers 409 when devices are
// already being upgraded by another task (the *Error's Details name them;
// set Target.SkipBusy to leave them out) or when the firmware must be
// verified first.
func (c *Client) CreateTask(ctx context.Context, t TaskCreate) (*Task, error) {
	var out Task
	if err := c.call(ctx, request{method: "POST", path: "/tasks", in: t}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PreviewTask is a dry run of CreateTask: it creates nothing and returns one
// page (opts) of the devices the task would target, in rollout order.
func (c *Client) PreviewTask(ctx context.Context, t TaskCreate, opts ListOptions) (*TaskPreview, error) {
	q := url.Values{}
	opts.encode(q)
	body := struct {
		TaskCreate
		DryRun bool `json:"dry_run"`
	}{t, true}
	var out TaskPreview
	if err := c.call(ctx, request{method: "POST", path: "/tasks", query: q, in: body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Task returns a task with its job counts.
func (c *Client) Task(ctx context.Context, id int64) (*Task, error) {
	var out Task
	if err := c.call(ctx, request{method: "GET", path: taskPath(id, "")}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListTasks returns one page of the tasks that match f, newest first.
func (c *Client) ListTasks(ctx context.Context, f TaskFilter, opts ListOptions) (*Page[Task], error) {
	q := url.Values{}
	setIf(q, "product", f.Product)
	setID(q, "firmware", f.FirmwareID)
	for _, s := range f.States {
		q.Add("state", string(s))
	}
	return getPage[Task](ctx, c, "/tasks", q, opts)
}

// AllTasks iterates over every task that matches f, newest first.
func (c *Client) AllTasks(ctx context.Context, f TaskFilter, opts ListOptions) iter.Seq2[Task, error] {
	return all(ctx, opts, func(ctx context.Context, o ListOptions) (*Page[Task], error) {
		return c.ListTasks(ctx, f, o)
	})
}

// TaskJobs returns one page of a task's jobs in any of states (none: all),
// in job id order.
func (c *Client) TaskJobs(ctx context.Context, id int64, states []JobState, opts ListOptions) (*Page[Job], error) {
	q := url.Values{}
	for _, s := range states {
		q.Add("state", string(s))
	}
	return getPage[Job](ctx, c, taskPath(id, "jobs"), q, opts)
}

// AllTaskJobs iterates over every job of a task in any of states.
func (c *Client) AllTaskJobs(ctx context.Context, id int64, states []JobState, opts ListOptions) iter.Seq2[Job, error] {
	return all(ctx, opts, func(ctx context.Context, o ListOptions) (*Page[Job], error) {
		return c.TaskJobs(ctx, id, states, o)
	})
}

// ExportTaskJobs writes the CSV export of a task's jobs in any of states
// (all when none) to w, as the server streams it.
func (c *Client) ExportTaskJobs(ctx context.Context, id int64, states []JobState, w io.Writer) error {
	q := url.Values{}
	for _, s := range states {
		q.Add("state", string(s))
	}
	resp, err := c.send(ctx, request{method: "GET", path: taskPath(id, "jobs.csv"), query: q})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("export the jobs of task %d: %w", id, err)
	}
	return nil
}

// Job returns one job.
func (c *Client) Job(ctx context.Context, id int64) (*Job, error) {
	var out Job
	if err := c.call(ctx, request{method: "GET", path: "/jobs/" + strconv.FormatInt(id, 10)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeviceJobs returns one page of a device's jobs, oldest first (job id
// order): its upgrade history.
func (c *Client) DeviceJobs(ctx context.Context, product, device string, opts ListOptions) (*Page[Job], error) {
	return getPage[Job](ctx, c, path("products", product, "devices", device, "jobs"), nil, opts)
}

// AllDeviceJobs iterates over every job of a device, oldest first.
func (c *Client) AllDeviceJobs(ctx context.Context, product, device string, opts ListOptions) iter.Seq2[Job, error] {
	return all(ctx, opts, func(ctx context.Context, o ListOptions) (*Page[Job], error) {
		return c.DeviceJobs(ctx, product, device, o)
	})
}

// PauseTask stops new job starts; jobs in flight go on.
func (c *Client) PauseTask(ctx context.Context, id int64) (*Task, error) {
	return c.taskAction(ctx, id, "pause")
}

// ResumeTask lets a paused task start jobs again.
func (c *Client) ResumeTask(ctx context.Context, id int64) (*Task, error) {
	return c.taskAction(ctx, id, "resume")
}

// CancelTask ends a task: queued jobs are cancelled and devices told to
// upgrade that have not started installing are told it is withdrawn.
func (c *Client) CancelTask(ctx context.Context, id int64) (*Task, error) {
	return c.taskAction(ctx, id, "cancel")
}

// AdvanceTask opens the next phase of a task with a manual phase gate.
func (c *Client) AdvanceTask(ctx context.Context, id int64) (*Task, error) {
	return c.taskAction(ctx, id, "advance")
}

// RetryFailed puts a task's failed and timed-out jobs back in the queue and
// says how many.
func (c *Client) RetryFailed(ctx context.Context, id int64) (*RetriedTask, error) {
	var out RetriedTask
	if err := c.call(ctx, request{method: "POST", path: taskPath(id, "retry-failed")}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RetryFailedDevices requeues the failed and timed-out jobs of the given
// devices in a task.
func (c *Client) RetryFailedDevices(ctx context.Context, id int64, devices []string) (*RetriedTask, error) {
	var out RetriedTask
	in := map[string][]string{"devices": devices}
	if err := c.call(ctx, request{method: "POST", path: taskPath(id, "retry-failed-devices"), in: in}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelledDevicesTask is a task after CancelDevices, with the number of
// jobs cancelled.
type CancelledDevicesTask struct {
	Task
	Cancelled int `json:"cancelled"`
}

// CancelDevices cancels the jobs of the given devices in a task that have
// not started installing; the task goes on with its other devices.
func (c *Client) CancelDevices(ctx context.Context, id int64, devices []string) (*CancelledDevicesTask, error) {
	var out CancelledDevicesTask
	in := map[string][]string{"devices": devices}
	if err := c.call(ctx, request{method: "POST", path: taskPath(id, "cancel-devices"), in: in}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) taskAction(ctx context.Context, id int64, action string) (*Task, error) {
	var out Task
	if err := c.call(ctx, request{method: "POST", path: taskPath(id, action)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func taskPath(id int64, sub string) string {
	p := "/tasks/" + strconv.FormatInt(id, 10)
	if sub != "" {
		p += "/" + sub
	}
	return p
}

// UpdateTask changes the policy of a scheduled, running or paused task:
// each field of policy (JSON names, e.g. "rate", "max_concurrent", "end")
// replaces the task's, a nil value unsets it, other fields stay. Target,
// firmware, mode and phases are fixed.
func (c *Client) UpdateTask(ctx context.Context, id int64, policy map[string]any) (*Task, error) {
	var out Task
	body := map[string]any{"policy": policy}
	if err := c.call(ctx, request{method: "PATCH", path: taskPath(id, ""), in: body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
