package ota

import "time"

// ChangeSet is a unit of work written in one transaction: the engine
// gathers the effects of a batch of device messages and timer decisions into
// one ChangeSet, so a burst of thousands of messages costs a handful of
// commits.
type ChangeSet struct {
	Jobs     []JobUpdate
	NewJobs  []Job // jobs added to running dynamic tasks
	Presence []Presence
	Seen     []LastSeen
	Versions []VersionReport
	// Tasks are written whole (state, phase, reason, engine bookkeeping).
	Tasks []TaskUpdate
	// DeleteDevices are deleted after everything else is written (with
	// their tags and versions), so that the cancel of their jobs and the
	// deletion are one change; a device that is already gone fails the
	// whole ChangeSet with ENOTFOUND. Events record the deletion.
	DeleteDevices []int64
	Events        []Event
}

// JobUpdate is one job change to store: Old is the job as read (its Rev
// guards against a concurrent writer), New is what it becomes.
// A change's event is in ChangeSet.Events.
type JobUpdate struct {
	Old Job
	New Job
}

// TaskUpdate is a task's new lifecycle fields.
type TaskUpdate struct {
	Task Task
	// Engine is the engine's opaque bookkeeping (rate budget, phase start).
	Engine []byte
}

// Presence is a device connecting or disconnecting.
type Presence struct {
	DeviceID int64
	Online   bool
	At       time.Time
}

// LastSeen is a device sending a message: its last-seen time moves to At
// (never back), and its online state stays as it is.
type LastSeen struct {
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

// CancelRequest cancels every queued job of a task at once, with an event
// per job, and optionally ends the task in the same transaction (so a
// crash can never leave an ended task with queued jobs, or the reverse).
type CancelRequest struct {
	TaskID  int64
	Code    string
	Message string
	Actor   string
	At      time.Time
	Task    *TaskUpdate
	Event   *Event
}
