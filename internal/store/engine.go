package store

import (
	"context"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// JobChange is one job transition to store: Old is the job as read (its Rev
// guards against a concurrent writer), New is what it becomes.
type JobChange struct {
	Old ota.Job
	New ota.Job
	// Event describes the change for the history; its job, task, product and
	// device fields are filled from the job when empty.
	Event ota.Event
}

// Presence is a device connecting or disconnecting.
type Presence struct {
	DeviceID int64
	Online   bool
	At       time.Time
}

// Seen is a device sending a message: its last_seen moves to At (never
// back), and its online state stays as it is.
type Seen struct {
	DeviceID int64
	At       time.Time
}

// VersionReport is a device reporting the version one module runs.
type VersionReport struct {
	DeviceID int64
	Module   string
	Version  string
	At       time.Time
}

// Change is a unit of work written in one transaction: the engine gathers
// the effects of a batch of device messages and timer decisions into one
// Change, so a burst of thousands of messages costs a handful of commits.
type Change struct {
	Jobs     []JobChange
	NewJobs  []ota.Job // jobs added to running dynamic tasks
	Presence []Presence
	Seen     []Seen
	Versions []VersionReport
	// Tasks are written whole (state, phase, reason, engine bookkeeping).
	Tasks []TaskUpdate
	// DeleteDevices are deleted after everything else is written (with
	// their tags and versions), so that the cancel of their jobs and the
	// deletion are one change; a device that is already gone fails the
	// whole Change with ENOTFOUND. Events record the deletion.
	DeleteDevices []int64
	Events        []ota.Event
}

// TaskUpdate is a task's new lifecycle fields.
type TaskUpdate struct {
	Task ota.Task
	// Engine is the engine's opaque bookkeeping (rate budget, phase start).
	Engine []byte
}

// Candidate is a device that a task might target, with the version its
// module runs ("" when it never reported one).
type Candidate struct {
	DeviceID int64
	Key      string
	Version  string
	Online   bool
}

// TargetQuery asks for the candidate devices of a task: the devices of a
// product, narrowed by tags and an explicit key list. Version rules are
// applied by the caller (they need the domain's version ordering).
type TargetQuery struct {
	Product string
	Module  string
	Tags    map[string]string
	Devices []string
}

// QueuedQuery asks for the next jobs a task may start.
type QueuedQuery struct {
	TaskID   int64
	MaxPhase int
	Limit    int
	// OnlineOnly keeps jobs whose device is connected (push mode: an
	// offline device gets its command when it connects).
	OnlineOnly bool
	// Now skips jobs whose retry backoff has not passed.
	Now time.Time
}

// PhaseCounts holds a task's job counts: phase -> state -> number.
type PhaseCounts map[int]map[ota.JobState]int64

// ActiveTask is a task the engine drives, with its bookkeeping.
type ActiveTask struct {
	Task   ota.Task
	Engine []byte
}

// Add moves n jobs into (phase, state), creating the entry as needed.
func (c PhaseCounts) Add(phase int, state ota.JobState, n int64) {
	byState := c[phase]
	if byState == nil {
		byState = make(map[ota.JobState]int64)
		c[phase] = byState
	}
	byState[state] += n
}

// CancelRequest cancels every queued job of a task in one statement, with an
// event per job, and optionally ends the task in the same transaction (so a
// crash can never leave an ended task with queued jobs, or the reverse).
type CancelRequest struct {
	TaskID  int64
	Code    string
	Message string
	Actor   string
	At      time.Time
	Task    *TaskUpdate
	Event   *ota.Event
}

// Rollouts is the part of the store that holds tasks and jobs: what the
// rollout engine writes and the API reads.
type Rollouts interface {
	CreateTask(ctx context.Context, t *ota.Task, jobs []ota.Job) error
	GetTask(ctx context.Context, id int64) (ota.Task, error)
	ListTasks(ctx context.Context, f TaskFilter, page Page) ([]ota.Task, string, error)
	ActiveTasks(ctx context.Context) ([]ActiveTask, error)
	TaskPhaseCounts(ctx context.Context, taskID int64) (PhaseCounts, error)
	MarkFirmwareVerified(ctx context.Context, firmwareID, taskID int64, at time.Time) error
	TargetCandidates(ctx context.Context, q TargetQuery) ([]Candidate, error)

	TaskTimeline(ctx context.Context, taskID int64, since time.Time) ([]ota.TimelinePoint, error)
	// TaskSeconds is the timeline per second over a task's first ten
	// minutes.
	TaskSeconds(ctx context.Context, taskID int64) ([]ota.TimelinePoint, error)
	TaskFailures(ctx context.Context, taskID int64) ([]FailureCount, error)

	GetJob(ctx context.Context, id int64) (ota.Job, error)
	ListJobs(ctx context.Context, f JobFilter, page Page) ([]ota.Job, string, error)
	ActiveJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error)
	// OrphanJobs returns up to limit active jobs whose device no longer
	// exists (deleted before its jobs were cancelled with it).
	OrphanJobs(ctx context.Context, limit int) ([]ota.Job, error)
	// ExistingDevices returns which of the given devices exist.
	ExistingDevices(ctx context.Context, deviceIDs []int64) (map[int64]bool, error)
	LastJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error)
	DeviceTags(ctx context.Context, deviceIDs []int64) (map[int64]map[string]string, error)
	JobsByID(ctx context.Context, ids []int64) ([]ota.Job, error)
	QueuedJobs(ctx context.Context, q QueuedQuery) ([]ota.Job, error)
	NextRetry(ctx context.Context, taskID int64, now time.Time) (time.Time, bool, error)
	ExpiredJobs(ctx context.Context, now time.Time, limit int) ([]ota.Job, error)
	UnansweredJobs(ctx context.Context, taskID int64, sentBefore time.Time, limit int) ([]ota.Job, error)
	JobsInStates(ctx context.Context, taskID int64, states []ota.JobState, afterID int64, limit int) ([]ota.Job, error)
	CancelQueued(ctx context.Context, r CancelRequest) (PhaseCounts, error)
	JobsWithVersions(ctx context.Context, q JobVersionQuery) ([]JobVersion, error)
	LatestEndedJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error)
	TaskMembers(ctx context.Context, taskIDs, deviceIDs []int64) (map[TaskDevice]bool, error)
	DevicesByID(ctx context.Context, ids []int64) ([]ota.Device, error)
	Apply(ctx context.Context, c Change) (conflicts []int64, err error)
}
