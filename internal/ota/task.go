package ota

import (
	"time"
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

// Terminal reports whether no further change can happen to a task in s.
func (s TaskState) Terminal() bool {
	return s == TaskCompleted || s == TaskCancelled || s == TaskAborted
}

// Task is a batch upgrade: one firmware, a target selection, a mode and a
// policy. Its jobs are the devices it targets.
type Task struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Product    string `json:"product"`
	Module     string `json:"module"`
	FirmwareID int64  `json:"firmware_id"`
	Version    string `json:"version"` // the firmware's version, the target
	// Verification marks a task that proves a firmware on a small explicit
	// device list before batch tasks may use it.
	Verification bool      `json:"verification"`
	Mode         Mode      `json:"mode"`
	State        TaskState `json:"state"`
	Policy       Policy    `json:"policy"`
	Target       Target    `json:"target"`
	// Phase is the phase now released (in JSON its number, from 1).
	Phase PhaseIndex `json:"phase"`
	// Counts holds the number of jobs per state, kept exact by the store in
	// the same transaction as every job change; awaiting_version counts the
	// targeted devices that have not reported a version yet.
	Counts map[JobState]int64 `json:"counts"`
	Total  int64              `json:"total"`
	// Reason says why a task ended other than completed (abort rule, operator).
	Reason string `json:"reason,omitempty"`
	// Waiting says what a scheduled or running task that starts no job
	// waits for and until when; the engine knows it, the store does not.
	Waiting   *Waiting   `json:"waiting,omitempty"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

// Target selects the devices of a task. Fields narrow one another.
type Target struct {
	// All selects every device of the firmware's product whose current
	// version of the module the firmware may upgrade from.
	All bool `json:"all,omitempty"`
	// Devices is an explicit list of device keys.
	Devices      []string          `json:"devices,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	FromVersions []string          `json:"from_versions,omitempty"`
	// Percent keeps a stable sample of the matching devices (0 < p <= 100).
	Percent float64 `json:"percent,omitempty"`
	// Seed makes the percent sample and the rollout order (SampleRank)
	// stable within a task and different between tasks; set it once when
	// the task is created. Empty seeds give every task the same sample.
	Seed string `json:"seed,omitempty"`
	// Dynamic tasks also take devices that come to match while they run.
	Dynamic bool `json:"dynamic,omitempty"`
	// SkipBusy leaves out devices that already have an active job on the
	// module instead of refusing the task.
	SkipBusy bool `json:"skip_busy,omitempty"`
}

// Policy governs how a task runs. Every field is optional; the zero value
// starts every job at once, with no retries, timeout or abort rule.
type Policy struct {
	Start *time.Time `json:"start,omitempty"`
	End   *time.Time `json:"end,omitempty"`
	// Window restricts job starts to a daily maintenance window.
	Window *Window `json:"window,omitempty"`
	// Rate is the maximum number of jobs started per minute (0: unlimited).
	Rate int `json:"rate,omitempty"`
	// RateGrowth multiplies Rate each time RateGrowthEvery more jobs have
	// succeeded (exponential rollout).
	RateGrowth      float64 `json:"rate_growth,omitempty"`
	RateGrowthEvery int     `json:"rate_growth_every,omitempty"`
	// MaxConcurrent caps the jobs in flight (0: unlimited).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// Phases are cumulative percentages of the target, e.g. [1, 10, 100].
	Phases []float64 `json:"phases,omitempty"`
	// PhaseSuccess is the success percentage a phase must reach before the
	// next one starts (automatic gate).
	PhaseSuccess float64 `json:"phase_success,omitempty"`
	// PhaseGate is "auto" (default) or "manual" (an operator advances).
	PhaseGate string `json:"phase_gate,omitempty"`
	Retries   int    `json:"retries,omitempty"`
	// RetryBackoff is the delay before a retry, doubled on each attempt.
	RetryBackoff Duration `json:"retry_backoff,omitempty"`
	// RetryOn lists the failure codes worth retrying; empty means all
	// failure codes and timed_out.
	RetryOn []string `json:"retry_on,omitempty"`
	// Timeout bounds the time a job may stay in flight.
	Timeout Duration `json:"timeout,omitempty"`
	// AbortFailure is the failure percentage among at least AbortMin
	// finished jobs at which the whole task is aborted.
	AbortFailure float64 `json:"abort_failure,omitempty"`
	AbortMin     int     `json:"abort_min,omitempty"`
	// Confirm says where devices ask for a local confirmation: none
	// (default), download (before downloading), install (after the verified
	// download, before activating) or both.
	Confirm ConfirmMode `json:"confirm,omitempty" enum:"none,download,install,both"`
}

// Window is a daily time range in a time zone, e.g. 01:00-05:00 Europe/Paris.
// A window whose end is before its start crosses midnight.
type Window struct {
	Start string `json:"start"` // HH:MM
	End   string `json:"end"`   // HH:MM
	TZ    string `json:"tz,omitempty"`
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("90s", "5m") in JSON, so policies stay readable in the API.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return Errorf(EINVALID, "invalid duration %q: use a number with a unit, e.g. 90s or 10m", b)
	}
	if v < 0 {
		return Errorf(EINVALID, "invalid duration %q: must not be negative", b)
	}
	*d = Duration(v)
	return nil
}

// TimelinePoint is a task's activity in one minute: the picture of a
// rollout over time.
type TimelinePoint struct {
	Minute    time.Time `json:"minute"`
	Started   int64     `json:"started"`
	Succeeded int64     `json:"succeeded"`
	Failed    int64     `json:"failed"`
}
