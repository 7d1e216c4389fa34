package ota

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func testJob(state JobState, percent int) Job {
	return Job{ID: 1, TaskID: 7, Device: "dev-1", State: state, Percent: percent, FromVersion: "1.0.0", Version: "1.1.0", CreatedAt: t0}
}

func progress(s JobState, pct int) JobInput {
	return JobInput{Kind: JobProgress, State: s, Percent: pct}
}
func inform(v string) JobInput { return JobInput{Kind: JobInform, Version: v} }

func TestJobApply(t *testing.T) {
	tests := []struct {
		name    string
		state   JobState
		percent int
		in      JobInput
		want    JobState
		wantPct int
		code    string
		changed bool
	}{
		// Engine sends.
		{"notify queued", JobQueued, 0, JobInput{Kind: JobNotify}, JobNotified, 0, "", true},
		{"offer queued", JobQueued, 0, JobInput{Kind: JobOffer}, JobOffered, 0, "", true},
		{"notify again records resend", JobNotified, 0, JobInput{Kind: JobNotify}, JobNotified, 0, "", true},
		{"offer again records resend", JobOffered, 0, JobInput{Kind: JobOffer}, JobOffered, 0, "", true},
		{"notify after accept", JobAccepted, 0, JobInput{Kind: JobNotify}, JobAccepted, 0, "", false},
		{"notify while downloading", JobDownloading, 30, JobInput{Kind: JobNotify}, JobDownloading, 30, "", false},
		// Confirmations.
		{"accept notified", JobNotified, 0, JobInput{Kind: JobConfirm, Accept: true}, JobAccepted, 0, "", true},
		{"accept offered", JobOffered, 0, JobInput{Kind: JobConfirm, Accept: true}, JobAccepted, 0, "", true},
		{"accept queued", JobQueued, 0, JobInput{Kind: JobConfirm, Accept: true}, JobAccepted, 0, "", true},
		{"accept twice", JobAccepted, 0, JobInput{Kind: JobConfirm, Accept: true}, JobAccepted, 0, "", false},
		{"accept late while downloading", JobDownloading, 50, JobInput{Kind: JobConfirm, Accept: true}, JobDownloading, 50, "", false},
		{"decline notified", JobNotified, 0, JobInput{Kind: JobConfirm}, JobRejected, 0, "", true},
		{"decline offered", JobOffered, 0, JobInput{Kind: JobConfirm}, JobRejected, 0, "", true},
		{"decline after download", JobDownloaded, 100, JobInput{Kind: JobConfirm}, JobRejected, 0, "", true},
		{"decline while installing", JobInstalling, 100, JobInput{Kind: JobConfirm}, JobInstalling, 100, "", false},
		// Confirmation after the download, before activation.
		{"downloaded awaits install confirmation", JobDownloading, 90, JobInput{Kind: JobProgress, State: JobDownloaded, ConfirmInstall: true}, JobAwaitingInstall, 100, "", true},
		{"downloaded again while awaiting", JobAwaitingInstall, 100, JobInput{Kind: JobProgress, State: JobDownloaded, ConfirmInstall: true}, JobAwaitingInstall, 100, "", false},
		{"late downloading while awaiting", JobAwaitingInstall, 100, progress(JobDownloading, 90), JobAwaitingInstall, 100, "", false},
		{"accept install", JobAwaitingInstall, 100, JobInput{Kind: JobConfirm, Accept: true, Install: true}, JobInstalling, 100, "", true},
		{"accept install twice", JobInstalling, 100, JobInput{Kind: JobConfirm, Accept: true, Install: true}, JobInstalling, 100, "", false},
		{"installing after awaiting", JobAwaitingInstall, 100, progress(JobInstalling, 0), JobInstalling, 100, "", true},
		{"decline install", JobAwaitingInstall, 100, JobInput{Kind: JobConfirm, Install: true, Message: "user said no"}, JobRejected, 0, "", true},
		{"decline install while installing", JobInstalling, 100, JobInput{Kind: JobConfirm, Install: true}, JobInstalling, 100, "", false},
		// Progress forward, skipping stages.
		{"accepted to downloading", JobAccepted, 0, progress(JobDownloading, 10), JobDownloading, 10, "", true},
		{"notified to downloading", JobNotified, 0, progress(JobDownloading, 5), JobDownloading, 5, "", true},
		{"offered to downloading", JobOffered, 0, progress(JobDownloading, 0), JobDownloading, 0, "", true},
		{"queued to downloading", JobQueued, 0, progress(JobDownloading, 20), JobDownloading, 20, "", true},
		{"notified to rebooting", JobNotified, 0, progress(JobRebooting, 0), JobRebooting, 100, "", true},
		{"percent rises", JobDownloading, 40, progress(JobDownloading, 60), JobDownloading, 60, "", true},
		{"downloading to downloaded", JobDownloading, 60, progress(JobDownloaded, 0), JobDownloaded, 100, "", true},
		{"downloaded to installing", JobDownloaded, 100, progress(JobInstalling, 0), JobInstalling, 100, "", true},
		{"installing to rebooting", JobInstalling, 100, progress(JobRebooting, 0), JobRebooting, 100, "", true},
		// Progress duplicates and late reports.
		{"percent falls", JobDownloading, 60, progress(JobDownloading, 40), JobDownloading, 60, "", false},
		{"percent repeats", JobDownloading, 60, progress(JobDownloading, 60), JobDownloading, 60, "", false},
		{"downloading after installing", JobInstalling, 100, progress(JobDownloading, 40), JobInstalling, 100, "", false},
		{"downloaded twice", JobDownloaded, 100, progress(JobDownloaded, 0), JobDownloaded, 100, "", false},
		{"installing after rebooting", JobRebooting, 100, progress(JobInstalling, 0), JobRebooting, 100, "", false},
		// Failures.
		{"failed with code", JobInstalling, 100, JobInput{Kind: JobProgress, State: JobFailed, Code: CodeVerifyFailed, Message: "bad hash"}, JobFailed, 0, CodeVerifyFailed, true},
		{"failed downloading default", JobDownloading, 30, progress(JobFailed, 0), JobFailed, 0, CodeDownloadFailed, true},
		{"failed notified default", JobNotified, 0, progress(JobFailed, 0), JobFailed, 0, CodeDownloadFailed, true},
		{"failed downloaded default", JobDownloaded, 100, progress(JobFailed, 0), JobFailed, 0, CodeInstallFailed, true},
		{"failed rebooting default", JobRebooting, 100, progress(JobFailed, 0), JobFailed, 0, CodeInstallFailed, true},
		// Informs.
		{"inform target after reboot", JobRebooting, 100, inform("1.1.0"), JobSucceeded, 100, "", true},
		{"inform normalised target", JobRebooting, 100, inform("v1.1"), JobSucceeded, 100, "", true},
		{"inform target while downloading", JobDownloading, 30, inform("1.1.0"), JobSucceeded, 100, "", true},
		{"inform target while notified", JobNotified, 0, inform("1.1.0"), JobSucceeded, 100, "", true},
		{"inform target while queued", JobQueued, 0, inform("1.1.0"), JobSucceeded, 100, "", true},
		{"inform old version after reboot", JobRebooting, 100, inform("1.0.0"), JobFailed, 0, CodeRolledBack, true},
		{"inform other version after reboot", JobRebooting, 100, inform("0.9.0"), JobFailed, 0, CodeRolledBack, true},
		{"inform old version while installing", JobInstalling, 100, inform("1.0.0"), JobInstalling, 100, "", false},
		{"inform old version before install", JobDownloaded, 100, inform("1.0.0"), JobDownloaded, 100, "", false},
		{"inform old version while queued", JobQueued, 0, inform("1.0.0"), JobQueued, 0, "", false},
		{"inform old version while notified", JobNotified, 0, inform("1.0.0"), JobNotified, 0, "", false},
		// Timeouts and cancels.
		{"timeout in flight", JobDownloading, 30, JobInput{Kind: JobTimeout}, JobTimedOut, 0, CodeTimedOut, true},
		{"timeout queued", JobQueued, 0, JobInput{Kind: JobTimeout}, JobQueued, 0, "", false},
		{"cancel queued", JobQueued, 0, JobInput{Kind: JobCancel, Code: CodeWindowClosed}, JobCancelled, 0, CodeWindowClosed, true},
		{"cancel in flight default code", JobInstalling, 100, JobInput{Kind: JobCancel}, JobCancelled, 0, CodeTaskCancelled, true},
		// Terminal jobs do not change.
		{"succeeded stays", JobSucceeded, 100, progress(JobRebooting, 0), JobSucceeded, 100, "", false},
		{"succeeded ignores rollback inform", JobSucceeded, 100, inform("1.0.0"), JobSucceeded, 100, "", false},
		{"failed ignores other inform", JobFailed, 30, inform("1.0.0"), JobFailed, 30, "", false},
		{"rejected ignores target inform", JobRejected, 0, inform("1.1.0"), JobRejected, 0, "", false},
		{"cancelled ignores target inform", JobCancelled, 0, inform("1.1.0"), JobCancelled, 0, "", false},
		// Late success: the device of a failed or timed-out job runs the target.
		{"failed succeeds late", JobFailed, 30, inform("1.1.0"), JobSucceeded, 100, "", true},
		{"timed out succeeds late", JobTimedOut, 100, inform("v1.1.0"), JobSucceeded, 100, "", true},
		// A job awaiting its device's first version report.
		{"awaiting eligible version", JobAwaitingVersion, 0, JobInput{Kind: JobInform, Version: "1.0.0", Eligible: true}, JobQueued, 0, "", true},
		{"awaiting ineligible version", JobAwaitingVersion, 0, inform("0.9.0"), JobCancelled, 0, CodeVersionNotEligible, true},
		{"awaiting target version", JobAwaitingVersion, 0, inform("1.1.0"), JobSucceeded, 100, "", true},
		{"awaiting is not notified", JobAwaitingVersion, 0, JobInput{Kind: JobNotify}, JobAwaitingVersion, 0, "", false},
		{"awaiting is not offered", JobAwaitingVersion, 0, JobInput{Kind: JobOffer}, JobAwaitingVersion, 0, "", false},
		{"awaiting ignores progress", JobAwaitingVersion, 0, progress(JobDownloading, 10), JobAwaitingVersion, 0, "", false},
		{"awaiting ignores confirm", JobAwaitingVersion, 0, JobInput{Kind: JobConfirm, Accept: true}, JobAwaitingVersion, 0, "", false},
		{"awaiting does not time out", JobAwaitingVersion, 0, JobInput{Kind: JobTimeout}, JobAwaitingVersion, 0, "", false},
		{"awaiting cancelled", JobAwaitingVersion, 0, JobInput{Kind: JobCancel}, JobCancelled, 0, CodeTaskCancelled, true},
		{"rejected ignores accept", JobRejected, 0, JobInput{Kind: JobConfirm, Accept: true}, JobRejected, 0, "", false},
		{"timed out ignores progress", JobTimedOut, 30, progress(JobDownloading, 50), JobTimedOut, 30, "", false},
		{"cancelled ignores notify", JobCancelled, 0, JobInput{Kind: JobNotify}, JobCancelled, 0, "", false},
		{"cancelled ignores cancel", JobCancelled, 0, JobInput{Kind: JobCancel}, JobCancelled, 0, "", false},
		// Requeue.
		{"requeue failed", JobFailed, 30, JobInput{Kind: JobRequeue}, JobQueued, 0, "", true},
		{"requeue timed out", JobTimedOut, 30, JobInput{Kind: JobRequeue}, JobQueued, 0, "", true},
		{"requeue succeeded", JobSucceeded, 100, JobInput{Kind: JobRequeue}, JobSucceeded, 100, "", false},
		{"requeue rejected", JobRejected, 0, JobInput{Kind: JobRequeue}, JobRejected, 0, "", false},
		{"requeue cancelled", JobCancelled, 0, JobInput{Kind: JobRequeue}, JobCancelled, 0, "", false},
		{"requeue active", JobDownloading, 30, JobInput{Kind: JobRequeue}, JobDownloading, 30, "", false},
		// Invalid inputs change nothing.
		{"unknown kind", JobQueued, 0, JobInput{Kind: "explode"}, JobQueued, 0, "", false},
		{"progress succeeded", JobRebooting, 100, progress(JobSucceeded, 0), JobRebooting, 100, "", false},
		{"percent over 100", JobDownloading, 30, progress(JobDownloading, 101), JobDownloading, 30, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := testJob(tt.state, tt.percent)
			got, ch := j.Apply(tt.in, t0.Add(time.Minute))
			if got.State != tt.want || got.Percent != tt.wantPct || got.Code != tt.code || ch.Changed != tt.changed {
				t.Fatalf("Apply = state %s percent %d code %q changed %v (%q); want %s %d %q %v",
					got.State, got.Percent, got.Code, ch.Changed, ch.Ignored, tt.want, tt.wantPct, tt.code, tt.changed)
			}
			checkChange(t, j, got, ch)
		})
	}
}

// checkChange checks the bookkeeping every Apply result must satisfy.
func checkChange(t *testing.T, before, after Job, ch JobChange) {
	t.Helper()
	if ch.From != before.State || ch.To != after.State {
		t.Errorf("change says %s -> %s, job went %s -> %s", ch.From, ch.To, before.State, after.State)
	}
	if !ch.Changed && (ch.Ignored == "" || !after.UpdatedAt.Equal(before.UpdatedAt)) {
		t.Errorf("unchanged job: Ignored %q, UpdatedAt %v -> %v", ch.Ignored, before.UpdatedAt, after.UpdatedAt)
	}
	if ch.Changed && ch.Ignored != "" {
		t.Errorf("changed job carries Ignored %q", ch.Ignored)
	}
	if after.State.Terminal() && after.Deadline != nil {
		t.Errorf("terminal job %s keeps deadline %v", after.State, after.Deadline)
	}
}

func TestJobApplyBookkeeping(t *testing.T) {
	now := t0.Add(time.Minute)
	j, _ := testJob(JobQueued, 0).Apply(JobInput{Kind: JobNotify, Timeout: time.Hour}, now)
	if j.StartedAt == nil || !j.StartedAt.Equal(now) || j.SentAt == nil || !j.SentAt.Equal(now) {
		t.Fatalf("notify: StartedAt %v SentAt %v, want both %v", j.StartedAt, j.SentAt, now)
	}
	if j.Deadline == nil || !j.Deadline.Equal(now.Add(time.Hour)) || !j.UpdatedAt.Equal(now) {
		t.Fatalf("notify: Deadline %v UpdatedAt %v", j.Deadline, j.UpdatedAt)
	}
	later := now.Add(10 * time.Minute)
	resent, _ := j.Apply(JobInput{Kind: JobNotify, Timeout: time.Hour}, later)
	if !resent.SentAt.Equal(later) || !resent.StartedAt.Equal(now) || !resent.Deadline.Equal(now.Add(time.Hour)) {
		t.Fatalf("resend: SentAt %v StartedAt %v Deadline %v; only SentAt may move", resent.SentAt, resent.StartedAt, resent.Deadline)
	}
	done, _ := resent.Apply(inform("1.1.0"), later)
	if done.Deadline != nil || done.State != JobSucceeded {
		t.Fatalf("success: state %s deadline %v", done.State, done.Deadline)
	}
}

func TestJobTimeoutRespectsDeadline(t *testing.T) {
	deadline := t0.Add(time.Hour)
	j := testJob(JobDownloading, 10)
	j.Deadline = &deadline
	if _, ch := j.Apply(JobInput{Kind: JobTimeout}, deadline.Add(-time.Second)); ch.Changed {
		t.Fatal("timeout before the deadline changed the job")
	}
	got, ch := j.Apply(JobInput{Kind: JobTimeout}, deadline)
	if !ch.Changed || got.State != JobTimedOut || got.Deadline != nil {
		t.Fatalf("timeout at the deadline: %s, deadline %v", got.State, got.Deadline)
	}
}

func TestJobRequeue(t *testing.T) {
	started := t0
	j := testJob(JobFailed, 40)
	j.Attempt, j.Code, j.Message, j.StartedAt = 1, CodeDownloadFailed, "reset", &started
	now := t0.Add(time.Hour)
	got, ch := j.Apply(JobInput{Kind: JobRequeue, Delay: 2 * time.Minute}, now)
	if !ch.Changed || got.State != JobQueued || got.Attempt != 2 || got.Code != "" || got.Message != "" || got.Percent != 0 {
		t.Fatalf("requeue: %+v", got)
	}
	if got.NextAttemptAt == nil || !got.NextAttemptAt.Equal(now.Add(2*time.Minute)) || got.SentAt != nil || got.Deadline != nil {
		t.Fatalf("requeue: NextAttemptAt %v SentAt %v Deadline %v", got.NextAttemptAt, got.SentAt, got.Deadline)
	}
	if !got.StartedAt.Equal(started) {
		t.Fatalf("requeue moved StartedAt to %v", got.StartedAt)
	}
	sent, _ := got.Apply(JobInput{Kind: JobNotify}, now.Add(3*time.Minute))
	if sent.NextAttemptAt != nil {
		t.Fatalf("a started job keeps NextAttemptAt %v", sent.NextAttemptAt)
	}
}

func TestJobInputValidate(t *testing.T) {
	tests := []struct {
		in  JobInput
		msg string
	}{
		{JobInput{Kind: JobProgress, State: JobDownloading, Percent: 50}, ""},
		{JobInput{Kind: JobProgress, State: JobFailed, Code: "flash_worn_out", Message: "sector 7"}, ""},
		{JobInput{Kind: JobInform, Version: "beta-ice"}, ""},
		{JobInput{Kind: "reboot"}, `unknown job input kind "reboot"`},
		{JobInput{Kind: JobProgress, State: JobSucceeded}, `progress state "succeeded" is not one a device reports`},
		{JobInput{Kind: JobProgress, State: JobDownloading, Percent: -1}, "outside 0..100"},
		{JobInput{Kind: JobProgress, State: JobFailed, Code: "Bad Code"}, "lowercase letters"},
		{JobInput{Kind: JobProgress, State: JobFailed, Message: strings.Repeat("x", 1025)}, "at most 1024 bytes"},
		{JobInput{Kind: JobInform}, "it is empty"},
		{JobInput{Kind: JobRequeue, Delay: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		err := tt.in.Validate()
		if tt.msg == "" && err != nil || tt.msg != "" && (ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.msg)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.in, err, tt.msg)
		}
	}
}

// randomInput draws an input from a small alphabet that hits every rule.
func randomInput(r *rand.Rand) JobInput {
	states := []JobState{JobDownloading, JobDownloaded, JobInstalling, JobRebooting, JobFailed, JobSucceeded}
	versions := []string{"1.0.0", "1.1.0", "v1.1", "0.9.0", "beta"}
	kinds := []JobInputKind{JobNotify, JobOffer, JobConfirm, JobProgress, JobProgress, JobProgress, JobInform, JobTimeout, JobCancel, JobRequeue}
	return JobInput{
		Kind:    kinds[r.IntN(len(kinds))],
		State:   states[r.IntN(len(states))],
		Percent: r.IntN(102),
		Accept:  r.IntN(4) > 0,
		Version: versions[r.IntN(len(versions))],
		Timeout: time.Duration(r.IntN(3)) * time.Minute,
		Delay:   time.Duration(r.IntN(3)) * time.Minute,
	}
}

// checkMonotonic fails when one Apply moved a job backwards, lowered its
// percent within an attempt (except to 0 when it ends without success), or
// left a terminal state other than by retry.
func checkMonotonic(t *testing.T, before, after Job, in JobInput, ch JobChange) {
	t.Helper()
	checkChange(t, before, after, ch)
	if in.Kind == JobRequeue && ch.Changed {
		if before.State != JobFailed && before.State != JobTimedOut || after.State != JobQueued || after.Attempt != before.Attempt+1 {
			t.Fatalf("requeue moved %s to %s (attempt %d -> %d)", before.State, after.State, before.Attempt, after.Attempt)
		}
		return
	}
	late := in.Kind == JobInform && after.State == JobSucceeded && (before.State == JobFailed || before.State == JobTimedOut)
	if before.State.Terminal() && ch.Changed && !late {
		t.Fatalf("terminal %s changed to %s by %+v", before.State, after.State, in)
	}
	if after.State.Stage() < before.State.Stage() {
		t.Fatalf("%s moved back to %s by %+v", before.State, after.State, in)
	}
	if after.State.Terminal() && after.State != JobSucceeded {
		if after.Percent != 0 {
			t.Fatalf("%s job shows %d%%; a job that ended without success shows 0", after.State, after.Percent)
		}
		return
	}
	if after.Percent < before.Percent || after.Attempt != before.Attempt {
		t.Fatalf("percent %d -> %d, attempt %d -> %d by %+v", before.Percent, after.Percent, before.Attempt, after.Attempt, in)
	}
}

func TestJobApplyNeverMovesBackwards(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for seq := range 2000 {
		j := testJob(JobQueued, 0)
		now := t0
		for range 40 {
			in := randomInput(r)
			now = now.Add(time.Duration(r.IntN(90)) * time.Second)
			next, ch := j.Apply(in, now)
			if t.Failed() {
				t.Fatalf("sequence %d", seq)
			}
			checkMonotonic(t, j, next, in, ch)
			j = next
		}
	}
}

func FuzzJobApply(f *testing.F) {
	f.Add([]byte{0, 3, 3, 5, 6, 9, 7, 1})
	f.Add([]byte{1, 2, 40, 3, 60, 3, 40, 6, 2})
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 200 {
			script = script[:200] // longer scripts find nothing new, only slow the search
		}
		r := rand.New(rand.NewPCG(uint64(len(script)), 0))
		j := testJob(JobQueued, 0)
		for i, b := range script {
			in := randomInput(rand.New(rand.NewPCG(uint64(b), uint64(i))))
			in.Percent = int(b) % 110
			next, ch := j.Apply(in, t0.Add(time.Duration(r.IntN(1000))*time.Second))
			checkMonotonic(t, j, next, in, ch)
			j = next
		}
	})
}
