package ota

import (
	"cmp"
	"fmt"
	"time"
	"unicode/utf8"
)

// JobInputKind names what happened to a job: something the engine did or
// something the device reported.
type JobInputKind string

// Job input kinds.
const (
	// JobNotify: the engine sent the upgrade command (push mode). Sent
	// again to a notified job it records the resend.
	JobNotify JobInputKind = "notify"
	// JobOffer: the engine offered the firmware in answer to a request.
	JobOffer JobInputKind = "offer"
	// JobConfirm: the device accepted (Accept) or declined the upgrade.
	JobConfirm JobInputKind = "confirm"
	// JobProgress: the device reported State (downloading with Percent,
	// downloaded, installing, rebooting, or failed with Code and Message).
	JobProgress JobInputKind = "progress"
	// JobInform: the device reported Version as its current version of the
	// job's module.
	JobInform JobInputKind = "inform"
	// JobTimeout: the job's deadline passed.
	JobTimeout JobInputKind = "timeout"
	// JobCancel: the task ended or the window closed; Code says which
	// (task_cancelled by default).
	JobCancel JobInputKind = "cancel"
	// JobRequeue: retry a failed or timed-out job after Delay.
	JobRequeue JobInputKind = "requeue"
)

// JobInput is one thing that happened to a job, applied by Job.Apply.
type JobInput struct {
	Kind JobInputKind
	// State is the stage a progress report names.
	State JobState
	// Percent is the download progress of a downloading report, 0..100.
	Percent int
	// Accept is the device's answer in a confirmation; Install says it
	// answers the confirmation after the download, before activation.
	Accept  bool
	Install bool
	// ConfirmInstall says the task asks devices to confirm before they
	// activate: a downloaded report then means the device waits for that
	// confirmation (JobAwaitingInstall).
	ConfirmInstall bool
	// Code and Message describe a failure or a cancellation.
	Code    string
	Message string
	// Version is the version an inform reports.
	Version string
	// Eligible says, with an inform, whether the task upgrades a device on
	// Version (the firmware upgrades from it and it is one of the task's
	// from-versions, if any). Only a job awaiting its device's version
	// uses it: the engine knows the firmware, the job does not.
	Eligible bool
	// Timeout is the policy's per-job timeout: when the job starts flight,
	// Apply sets its Deadline that far ahead (0: no deadline).
	Timeout time.Duration
	// Delay is a requeued job's backoff (see Policy.RetryAfter).
	Delay time.Duration
}

// JobChange says what Job.Apply did.
type JobChange struct {
	// Changed is true when the job differs from before and must be stored.
	Changed bool
	// From and To are the states before and after; equal when only the
	// percent or bookkeeping (a resend time) changed.
	From, To JobState
	// Ignored says, when nothing changed, why the input had no effect
	// (duplicate, late, out of order), for debug logs.
	Ignored string
}

// Limits on what devices may put in a job input.
const (
	MaxCodeLen    = 64
	MaxMessageLen = 1024
)

// progressStates are the states a device may report in a progress message.
var progressStates = map[JobState]bool{
	JobDownloading: true, JobDownloaded: true, JobInstalling: true, JobRebooting: true, JobFailed: true,
}

// Validate checks an input that came from outside (a device message, an
// operator), so that its sender gets a clear error. Apply ignores what
// Validate would refuse, so it is safe to skip for engine inputs.
func (in JobInput) Validate() error {
	switch in.Kind {
	case JobNotify, JobOffer, JobConfirm, JobTimeout:
	case JobProgress:
		return in.validateProgress()
	case JobInform:
		if reason := checkVersionText(in.Version); reason != "" {
			return Errorf(EINVALID, "inform version %s is not usable: %s", quoteInput(in.Version), reason)
		}
	case JobCancel:
		return validateCode(in.Code, in.Message)
	case JobRequeue:
		if in.Delay < 0 {
			return Errorf(EINVALID, "requeue delay %s is negative", in.Delay)
		}
	default:
		return Errorf(EINVALID, "unknown job input kind %q: use notify, offer, confirm, progress, inform, timeout, cancel or requeue", in.Kind)
	}
	return nil
}

func (in JobInput) validateProgress() error {
	if !progressStates[in.State] {
		return Errorf(EINVALID, "progress state %q is not one a device reports: use downloading, downloaded, installing, rebooting or failed", in.State)
	}
	if in.Percent < 0 || in.Percent > 100 {
		return Errorf(EINVALID, "progress percent %d is outside 0..100", in.Percent)
	}
	return validateCode(in.Code, in.Message)
}

func validateCode(code, message string) error {
	if len(code) > MaxCodeLen || !isCode(code) {
		return Errorf(EINVALID, "code %s must be at most %d lowercase letters, digits or '_', e.g. %s", quoteInput(code), MaxCodeLen, CodeInstallFailed)
	}
	if len(message) > MaxMessageLen || !utf8.ValidString(message) {
		return Errorf(EINVALID, "message must be valid UTF-8 of at most %d bytes (got %d bytes)", MaxMessageLen, len(message))
	}
	return nil
}

func isCode(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Stage returns s's position in the lifecycle: 0 for awaiting_version and
// queued, 1 for notified and offered, rising to 7 for rebooting, and 8 for
// every terminal state.
// A job's stage never decreases except when a retry requeues it.
func (s JobState) Stage() int {
	switch s {
	case JobAwaitingVersion, JobQueued:
		return 0
	case JobNotified, JobOffered:
		return 1
	case JobAccepted:
		return 2
	case JobDownloading:
		return 3
	case JobDownloaded:
		return 4
	case JobAwaitingInstall:
		return 5
	case JobInstalling:
		return 6
	case JobRebooting:
		return 7
	}
	return 8
}

// Apply returns the job after in happened at now, and what changed. It is
// idempotent and monotonic: duplicate, late and out-of-order reports change
// nothing, a job never moves back in its lifecycle, its percent only rises,
// and a terminal job changes only when a retry requeues a failed or
// timed-out job, or when the device of a failed or timed-out job reports
// the target version (a late success: the job becomes succeeded).
//
// Defaults: a failure report without a code gets download_failed before the
// download finished and install_failed after; a cancel without a code gets
// task_cancelled. A device that reports progress before it was asked, or
// confirmed, has evidently accepted, so the job moves forward.
func (j Job) Apply(in JobInput, now time.Time) (Job, JobChange) {
	if in.Validate() != nil {
		return j, ignored(j, "invalid input")
	}
	if j.State.Terminal() && in.Kind != JobRequeue && !j.lateSuccess(in) {
		return j, ignored(j, fmt.Sprintf("job is %s", j.State))
	}
	if j.State == JobAwaitingVersion && in.Kind != JobInform && in.Kind != JobCancel {
		return j, ignored(j, "the device has not reported its version yet")
	}
	next, why := j.apply(in, now)
	if why != "" {
		return j, ignored(j, why)
	}
	next.UpdatedAt = now
	return next, JobChange{Changed: true, From: j.State, To: next.State}
}

func ignored(j Job, why string) JobChange {
	return JobChange{From: j.State, To: j.State, Ignored: why}
}

// apply returns the changed job, or the reason nothing changes.
func (j Job) apply(in JobInput, now time.Time) (Job, string) {
	switch in.Kind {
	case JobNotify:
		return j.sent(JobNotified, in, now)
	case JobOffer:
		return j.sent(JobOffered, in, now)
	case JobConfirm:
		return j.confirm(in, now)
	case JobProgress:
		return j.progress(in, now)
	case JobInform:
		return j.inform(in, now)
	case JobTimeout:
		return j.timeout(now)
	case JobCancel:
		return j.end(JobCancelled, cmp.Or(in.Code, CodeTaskCancelled), in.Message), ""
	}
	return j.requeue(in, now)
}

// sent records that the command or offer went out; a resend keeps the
// state and moves SentAt, so the engine knows when to send again.
func (j Job) sent(to JobState, in JobInput, now time.Time) (Job, string) {
	switch j.State.Stage() {
	case 0:
		j = j.start(to, in, now)
	case 1:
	default:
		return j, "the device already answered"
	}
	j.SentAt = &now
	return j, ""
}

// start moves a job into flight: it sets StartedAt the first time ever,
// and a Deadline from now on every attempt.
func (j Job) start(to JobState, in JobInput, now time.Time) Job {
	j.State = to
	j.NextAttemptAt = nil
	if j.StartedAt == nil {
		j.StartedAt = &now
	}
	if in.Timeout > 0 {
		d := now.Add(in.Timeout)
		j.Deadline = &d
	}
	return j
}

// advance moves an active job forward to a later stage, starting it first
// if it was still queued.
func (j Job) advance(to JobState, in JobInput, now time.Time) Job {
	if j.State == JobQueued {
		j = j.start(to, in, now)
	}
	j.State = to
	return j
}

func (j Job) confirm(in JobInput, now time.Time) (Job, string) {
	stage := j.State.Stage()
	switch {
	case in.Accept && in.Install && stage < JobInstalling.Stage():
		// The device confirmed the activation: it installs now.
		j = j.advance(JobInstalling, in, now)
		j.Percent = 100
		return j, ""
	case in.Accept && in.Install:
		return j, "already installing"
	case in.Accept && stage < JobAccepted.Stage():
		return j.advance(JobAccepted, in, now), ""
	case in.Accept:
		return j, "already accepted"
	case stage < JobInstalling.Stage():
		// Declining is allowed until installing: devices may ask their user
		// after the download, before they activate the new image.
		return j.end(JobRejected, "", in.Message), ""
	}
	return j, "the device is already installing"
}

func (j Job) progress(in JobInput, now time.Time) (Job, string) {
	if in.State == JobFailed {
		code := cmp.Or(in.Code, CodeInstallFailed)
		if in.Code == "" && j.State.Stage() <= JobDownloading.Stage() {
			code = CodeDownloadFailed
		}
		return j.end(JobFailed, code, in.Message), ""
	}
	to := in.State
	if to == JobDownloaded && in.ConfirmInstall {
		to = JobAwaitingInstall // verified; the device now asks locally
	}
	switch {
	case to.Stage() < j.State.Stage():
		return j, fmt.Sprintf("stale %s report: job is %s", in.State, j.State)
	case to == j.State && to == JobDownloading:
		if in.Percent <= j.Percent {
			return j, fmt.Sprintf("percent %d does not rise above %d", in.Percent, j.Percent)
		}
		j.Percent = in.Percent
		return j, ""
	case to == j.State:
		return j, "duplicate report"
	}
	j = j.advance(to, in, now)
	j.Percent = in.Percent
	if to != JobDownloading {
		j.Percent = 100 // Percent is the download's: past it, the download is whole
	}
	return j, ""
}

// inform settles a job from the version the device runs: the target means
// success; anything else after the device said it was rebooting means it
// rolled back. While installing, a device may reconnect (and inform) with
// the old image still running: that is not yet a rollback.
func (j Job) inform(in JobInput, now time.Time) (Job, string) {
	if SameVersion(in.Version, j.Version) {
		msg := ""
		if j.State.Terminal() {
			msg = fmt.Sprintf("succeeded late: the device reported version %s after the job had ended %s (%s)", in.Version, j.State, j.Code)
		}
		j.Percent = 100
		return j.end(JobSucceeded, "", msg), ""
	}
	if j.State == JobAwaitingVersion {
		return j.reported(in), ""
	}
	if j.State.Stage() < JobRebooting.Stage() {
		return j, "not rebooted yet: the device still runs its old version"
	}
	msg := fmt.Sprintf("device reported version %s after rebooting into %s", in.Version, j.Version)
	return j.end(JobFailed, CodeRolledBack, msg), ""
}

// lateSuccess reports whether in is the device of a failed or timed-out
// job reporting the target version: it runs it after all.
func (j Job) lateSuccess(in JobInput) bool {
	return in.Kind == JobInform && (j.State == JobFailed || j.State == JobTimedOut) && SameVersion(in.Version, j.Version)
}

// reported settles a job that awaited its device's first version report:
// queued when the task upgrades from that version, otherwise cancelled as
// not applicable.
func (j Job) reported(in JobInput) Job {
	j.FromVersion = in.Version
	if in.Eligible {
		j.State = JobQueued
		return j
	}
	return j.end(JobCancelled, CodeVersionNotEligible,
		fmt.Sprintf("the device reported version %s, which this task does not upgrade from", in.Version))
}

func (j Job) timeout(now time.Time) (Job, string) {
	switch {
	case !j.State.InFlight():
		return j, "job is not in flight"
	case j.Deadline != nil && now.Before(*j.Deadline):
		return j, "deadline not reached"
	}
	msg := fmt.Sprintf("no success reported while %s before the deadline", j.State)
	return j.end(JobTimedOut, CodeTimedOut, msg), ""
}

// end moves the job to a terminal state. Only success keeps a percent:
// a failed job that had downloaded its file must not read as 100%.
func (j Job) end(to JobState, code, message string) Job {
	if to != JobSucceeded {
		j.Percent = 0
	}
	j.State = to
	j.Code = code
	j.Message = message
	j.Deadline = nil
	j.NextAttemptAt = nil
	return j
}

// requeue puts a failed or timed-out job back in the queue for its next
// attempt. StartedAt keeps the first start, for the job's total duration.
func (j Job) requeue(in JobInput, now time.Time) (Job, string) {
	if j.State != JobFailed && j.State != JobTimedOut {
		return j, fmt.Sprintf("only failed or timed-out jobs are retried, job is %s", j.State)
	}
	j.State = JobQueued
	j.Attempt++
	j.Percent = 0
	j.Code, j.Message = "", ""
	j.Deadline, j.SentAt, j.NextAttemptAt = nil, nil, nil
	if in.Delay > 0 {
		at := now.Add(in.Delay)
		j.NextAttemptAt = &at
	}
	return j, ""
}
