package ota

import (
	"strings"
	"testing"
	"time"
)

// What a held task waits for, and until when, in the window's zone.
func TestWaiting(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) // 14:00 in Paris
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	queued := counts(JobQueued, 10)
	tests := []struct {
		name   string
		p      Policy
		in     PlanInput
		wait   WaitInput
		reason string
		until  time.Time // zero: no until
		zone   string
		msg    string
	}{
		{"not held", Policy{}, PlanInput{Counts: queued}, WaitInput{}, "", time.Time{}, "", ""},
		{"nothing queued", Policy{Window: &Window{Start: "01:00", End: "05:00"}}, PlanInput{Counts: counts(JobSucceeded, 3)}, WaitInput{}, "", time.Time{}, "", ""},
		{"scheduled", Policy{Start: ptime(now.Add(3 * time.Hour))}, PlanInput{Counts: queued}, WaitInput{Scheduled: true},
			HoldBeforeStart, now.Add(3 * time.Hour), "UTC", "the task starts at 2025-06-01 15:00 UTC"},
		{"running before start", Policy{Start: ptime(now.Add(time.Hour)), Window: &Window{Start: "01:00", End: "23:00", TZ: "Europe/Paris"}},
			PlanInput{Counts: queued, Location: paris}, WaitInput{Location: paris},
			HoldBeforeStart, now.Add(time.Hour), "Europe/Paris", "the task starts at 2025-06-01 15:00 CEST"},
		{"window closed", Policy{Window: &Window{Start: "01:00", End: "05:00", TZ: "Europe/Paris"}},
			PlanInput{Counts: queued, Location: paris}, WaitInput{Location: paris},
			HoldWindowClosed, time.Date(2025, 6, 2, 1, 0, 0, 0, paris), "Europe/Paris",
			"outside the daily window 01:00-05:00 (Europe/Paris): jobs start again at 2025-06-02 01:00 CEST"},
		{"window closed, end first", Policy{Window: &Window{Start: "01:00", End: "05:00"}, End: ptime(now.Add(time.Hour))},
			PlanInput{Counts: queued}, WaitInput{},
			HoldWindowClosed, time.Date(2025, 6, 2, 1, 0, 0, 0, time.UTC), "UTC", "jobs start again at 2025-06-02 01:00 UTC"},
		{"rate", Policy{Rate: 60}, PlanInput{Counts: queued, Bucket: RateBucket{Tokens: 0.5, At: now}}, WaitInput{},
			HoldRate, now.Add(500 * time.Millisecond), "UTC", "the rate limit of 60 jobs a minute is spent"},
		{"concurrency", Policy{MaxConcurrent: 3}, PlanInput{Counts: counts(JobQueued, 10, JobDownloading, 3)}, WaitInput{},
			HoldConcurrency, time.Time{}, "UTC", "3 jobs are in flight, the most the policy allows"},
		{"manual gate", Policy{Phases: []float64{10, 100}, PhaseGate: GateManual},
			PlanInput{Counts: counts(JobQueued, 9, JobSucceeded, 1), PhaseJobs: 1, PhaseSucceeded: 1, PhaseFinished: 1},
			WaitInput{GateHeld: true, PhaseJobs: 1, PhaseSucceeded: 1},
			HoldPhaseGate, time.Time{}, "UTC", "phase 1 of 2 is done: the next phase starts when an operator advances the task"},
		{"gate not reached", Policy{Phases: []float64{10, 100}, PhaseSuccess: 90},
			PlanInput{Counts: counts(JobQueued, 8, JobSucceeded, 1, JobFailed, 1), PhaseJobs: 2, PhaseSucceeded: 1, PhaseFinished: 2},
			WaitInput{GateHeld: true, PhaseJobs: 2, PhaseSucceeded: 1, PhaseFinished: 2},
			HoldPhaseGate, time.Time{}, "UTC", "phase 1 of 2 ended with 50.0% succeeded, below the gate's 90%"},
		{"gate waits for a device's first report", Policy{Phases: []float64{10, 100}},
			PlanInput{Counts: counts(JobQueued, 45, JobSucceeded, 5, JobAwaitingVersion, 1), PhaseJobs: 6, PhaseSucceeded: 5, PhaseFinished: 5},
			WaitInput{GateHeld: true, PhaseJobs: 6, PhaseSucceeded: 5, PhaseFinished: 5},
			HoldPhaseGate, time.Time{}, "UTC", "phase 1 of 2 waits for 1 job whose device has not reported a version yet (awaiting_version)"},
		{"gate below its rate, waiting for reports", Policy{Phases: []float64{10, 100}, PhaseSuccess: 90},
			PlanInput{Counts: counts(JobQueued, 40, JobSucceeded, 8, JobAwaitingVersion, 2), PhaseJobs: 10, PhaseSucceeded: 8, PhaseFinished: 8},
			WaitInput{GateHeld: true, PhaseJobs: 10, PhaseSucceeded: 8, PhaseFinished: 8},
			HoldPhaseGate, time.Time{}, "UTC", "phase 1 of 2 (80.0% succeeded, below the gate's 90%) waits for 2 jobs whose devices have not reported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now, tt.wait.Now = now, now
			w := tt.p.Waiting(tt.wait, tt.p.Plan(tt.in))
			if tt.reason == "" {
				if w != nil {
					t.Fatalf("waiting %+v, want none", w)
				}
				return
			}
			if w == nil || w.Reason != tt.reason || w.TimeZone != tt.zone || !strings.Contains(w.Message, tt.msg) {
				t.Fatalf("waiting %+v, want reason %s in %s saying %q", w, tt.reason, tt.zone, tt.msg)
			}
			switch {
			case tt.until.IsZero() && w.Until != nil:
				t.Errorf("until %v, want none", w.Until)
			case !tt.until.IsZero() && (w.Until == nil || !w.Until.Equal(tt.until) || w.Until.Location().String() != tt.zone):
				t.Errorf("until %v, want %v in %s", w.Until, tt.until, tt.zone)
			}
		})
	}
}
