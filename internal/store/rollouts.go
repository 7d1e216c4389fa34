package store

import (
	"context"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// Rollouts is the part of the store that holds tasks and jobs: what the
// rollout engine writes and the API reads.
type Rollouts interface {
	// CreateTask stores a task and its jobs; on success it fills the
	// task's id and each job as stored (id, task, state, times, revision).
	CreateTask(ctx context.Context, t *ota.Task, jobs []ota.Job) error
	GetTask(ctx context.Context, id int64) (ota.Task, error)
	ListTasks(ctx context.Context, f TaskFilter, page Page) ([]ota.Task, string, error)
	ActiveTasks(ctx context.Context) ([]ota.ActiveTask, error)
	TaskPhaseCounts(ctx context.Context, taskID int64) (ota.PhaseCounts, error)
	MarkFirmwareVerified(ctx context.Context, firmwareID, taskID int64, at time.Time) error
	TargetCandidates(ctx context.Context, q ota.TargetQuery) ([]ota.Candidate, error)

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
	// QueuedJobs returns the next jobs a task may start, in rollout order,
	// and the place of the last of them (for the next read's After).
	QueuedJobs(ctx context.Context, q ota.QueuedQuery) ([]ota.Job, ota.RolloutPos, error)
	NextRetry(ctx context.Context, taskID int64, now time.Time) (time.Time, bool, error)
	ExpiredJobs(ctx context.Context, now time.Time, limit int) ([]ota.Job, error)
	UnansweredJobs(ctx context.Context, taskID int64, sentBefore time.Time, limit int) ([]ota.Job, error)
	JobsInStates(ctx context.Context, taskID int64, states []ota.JobState, afterID int64, limit int) ([]ota.Job, error)
	CancelQueued(ctx context.Context, r ota.CancelRequest) (ota.PhaseCounts, error)
	JobsWithVersions(ctx context.Context, q ota.JobVersionQuery) ([]ota.JobVersion, error)
	LatestEndedJobs(ctx context.Context, deviceIDs []int64) ([]ota.Job, error)
	TaskMembers(ctx context.Context, taskIDs, deviceIDs []int64) (map[ota.TaskDevice]bool, error)
	DevicesByID(ctx context.Context, ids []int64) ([]ota.Device, error)
	Apply(ctx context.Context, c ota.ChangeSet) (conflicts []int64, err error)
}
