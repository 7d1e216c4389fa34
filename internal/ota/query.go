package ota

import "time"

// ActiveTask is a task the engine drives, with its bookkeeping.
type ActiveTask struct {
	Task   Task
	Engine []byte
}

// PhaseCounts holds a task's job counts: phase -> state -> number.
type PhaseCounts map[int]map[JobState]int64

// Add moves n jobs into (phase, state), creating the entry as needed.
func (c PhaseCounts) Add(phase int, state JobState, n int64) {
	byState := c[phase]
	if byState == nil {
		byState = make(map[JobState]int64)
		c[phase] = byState
	}
	byState[state] += n
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

// Candidate is a device that a task might target, with the version its
// module runs ("" when it never reported one).
type Candidate struct {
	DeviceID int64
	Key      string
	Version  string
	Online   bool
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
	// After, when set, skips the jobs at or before it in rollout order: a
	// sweep reads on from the last job of its previous batch rather than
	// from the task's first queued job. On PostgreSQL the jobs a sweep has
	// started keep dead entries in the queued index until a vacuum, which
	// a read from the start would step over, more of them each batch.
	After *RolloutPos
}

// RolloutPos is a job's place in its task's rollout order: its phase, then
// its sequence number within the task.
type RolloutPos struct {
	Phase int
	Seq   int64
}

// JobVersionQuery pages through a task's jobs in some states, with the
// versions their devices run.
type JobVersionQuery struct {
	TaskID  int64
	States  []JobState
	AfterID int64
	Limit   int
	// Reported keeps only the jobs whose device has reported a version of
	// the job's module.
	Reported bool
	// Devices, when set, keeps only the jobs of these device keys.
	Devices []string
}

// JobVersion is a job with the version its device reports now for the
// job's module ("" when it has never reported one).
type JobVersion struct {
	Job     Job
	Version string
}

// TaskDevice names one device's membership of one task.
type TaskDevice struct {
	TaskID, DeviceID int64
}

// DeviceCredentials is what a device login is checked against.
type DeviceCredentials struct {
	DeviceID   int64
	SecretHash []byte
	// Protocol is the device's product's (Product.Protocol).
	Protocol string
	// SealedSecret is the device secret encrypted with the server's key,
	// kept only for devices of ProtocolEnOS products whose secret was made
	// (created or rotated) while the product was one; nil otherwise.
	SealedSecret []byte
}
