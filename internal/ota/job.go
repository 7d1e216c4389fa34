package ota

import "time"

// JobState is where one device's part of a task is.
type JobState string

// Job states, in the order a successful job passes through them.
const (
	// JobAwaitingVersion: the device has never reported the version of the
	// job's module, so whether the firmware upgrades it is not known yet.
	// The job waits, started by nothing, until the device reports: then it
	// is queued, succeeds (the device already runs the target) or is
	// cancelled with CodeVersionNotEligible.
	JobAwaitingVersion JobState = "awaiting_version"
	JobQueued          JobState = "queued"
	JobNotified        JobState = "notified" // push sent
	JobOffered         JobState = "offered"  // answer to a device's request
	JobAccepted        JobState = "accepted" // device confirmed
	JobDownloading     JobState = "downloading"
	JobDownloaded      JobState = "downloaded"
	// JobAwaitingInstall: the file is downloaded and verified and the
	// device waits for its local confirmation before it activates it.
	JobAwaitingInstall JobState = "awaiting_install_confirmation"
	JobInstalling      JobState = "installing"
	JobRebooting       JobState = "rebooting"
	JobSucceeded       JobState = "succeeded"
	JobFailed          JobState = "failed"
	JobRejected        JobState = "rejected" // the device declined
	JobTimedOut        JobState = "timed_out"
	JobCancelled       JobState = "cancelled"
)

// JobStates lists every job state in lifecycle order, for stable display.
var JobStates = []JobState{
	JobAwaitingVersion, JobQueued, JobNotified, JobOffered, JobAccepted, JobDownloading, JobDownloaded,
	JobAwaitingInstall, JobInstalling, JobRebooting, JobSucceeded, JobFailed, JobRejected, JobTimedOut, JobCancelled,
}

// Terminal reports whether s ends a job (a retry may still requeue a failed
// or timed-out job while attempts remain).
func (s JobState) Terminal() bool {
	switch s {
	case JobSucceeded, JobFailed, JobRejected, JobTimedOut, JobCancelled:
		return true
	}
	return false
}

// InFlight reports whether a job in s has been started and not yet ended.
func (s JobState) InFlight() bool { return !s.Terminal() && !s.Waiting() }

// Waiting reports whether a job in s has not been started: queued, or
// awaiting the device's first version report.
func (s JobState) Waiting() bool { return s == JobQueued || s == JobAwaitingVersion }

// CommandPending reports whether the device of a job in s may still need
// the job's command: the job is in flight and the device has not reported
// rebooting. A device that lost its state (power lost mid-download) goes on
// only if it is sent the command again; after rebooting, its inform
// settles the job.
func (s JobState) CommandPending() bool {
	return s.InFlight() && s.Stage() < JobRebooting.Stage()
}

// Valid reports whether s is a known job state.
func (s JobState) Valid() bool {
	for _, v := range JobStates {
		if v == s {
			return true
		}
	}
	return false
}

// Failure codes carried by failed, timed-out and cancelled jobs.
const (
	CodeDownloadFailed   = "download_failed"
	CodeVerifyFailed     = "verify_failed"
	CodeSignatureInvalid = "signature_invalid"
	CodeInstallFailed    = "install_failed"
	CodeRolledBack       = "rolled_back"
	CodeDowngradeRefused = "downgrade_refused"
	CodeTimedOut         = "timed_out"
	CodeWindowClosed     = "window_closed"
	CodeTaskCancelled    = "task_cancelled"
	CodeTaskAborted      = "task_aborted"
	// CodeSuperseded: the device reported a version the firmware does not
	// upgrade from (it got there another way), so the job would downgrade.
	CodeSuperseded = "superseded"
	// CodeVersionNotEligible: a device targeted before it had reported a
	// version then reported one the firmware does not upgrade from (or
	// outside the task's from-versions): the job does not apply to it.
	CodeVersionNotEligible = "version_not_eligible"
	// CodeDeviceDeleted: the device was deleted while the job was active.
	CodeDeviceDeleted = "device_deleted"
)

// Job is one device's part of a task.
type Job struct {
	ID       int64    `json:"id"`
	TaskID   int64    `json:"task_id"`
	DeviceID int64    `json:"-"`
	Device   string   `json:"device"`
	Product  string   `json:"product"`
	Module   string   `json:"module"`
	State    JobState `json:"state"`
	// Percent is the download's progress while the job is in flight (100
	// once the file is whole); a succeeded job is at 100, and a job that
	// ended any other way at 0, so that no failure reads as complete.
	Percent int `json:"percent"`
	// Attempt counts the tries of the job from 1, as the device protocol
	// does: a retry after a failure is attempt 2.
	Attempt int    `json:"attempt"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// Phase is the task phase this job belongs to (in JSON its number,
	// from 1).
	Phase PhaseIndex `json:"phase"`
	// FromVersion is the module version the device ran when the job was
	// made; a device that reports it again after rebooting rolled back.
	FromVersion string     `json:"from_version,omitempty"`
	Version     string     `json:"version"` // target version
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	// Deadline is when an in-flight job times out; nil without a timeout.
	Deadline *time.Time `json:"deadline,omitempty"`
	// NextAttemptAt delays a retried job until its backoff has passed.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// SentAt is when the upgrade command or offer was last sent, so that an
	// unanswered command is sent again after a while.
	SentAt *time.Time `json:"sent_at,omitempty"`
	// Rev rises with every stored change (optimistic concurrency).
	Rev int64 `json:"-"`
}
