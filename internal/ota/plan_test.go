package ota

import (
	"math/rand/v2"
	"testing"
	"time"
)

func counts(kv ...any) map[JobState]int64 {
	c := map[JobState]int64{}
	for i := 0; i < len(kv); i += 2 {
		c[kv[i].(JobState)] = int64(kv[i+1].(int))
	}
	return c
}

func TestPlanStarts(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	full := RateBucket{Tokens: 100, At: now}
	tests := []struct {
		name     string
		p        Policy
		in       PlanInput
		start    int
		hold     string
		wake     time.Time
		complete bool
	}{
		{"unlimited", Policy{}, PlanInput{Counts: counts(JobQueued, 10)}, 10, "", time.Time{}, false},
		{"nothing queued", Policy{}, PlanInput{Counts: counts(JobDownloading, 3)}, 0, "", time.Time{}, false},
		{"done", Policy{}, PlanInput{Counts: counts(JobSucceeded, 3, JobFailed, 1)}, 0, "", time.Time{}, true},
		{"done but dynamic", Policy{}, PlanInput{Counts: counts(JobSucceeded, 3), Dynamic: true}, 0, "", time.Time{}, false},
		{"empty task", Policy{}, PlanInput{}, 0, "", time.Time{}, true},
		{"awaiting versions is not done", Policy{}, PlanInput{Counts: counts(JobSucceeded, 3, JobAwaitingVersion, 2)}, 2, "", time.Time{}, false},
		{"awaiting versions may start once reported", Policy{}, PlanInput{Counts: counts(JobQueued, 1, JobAwaitingVersion, 5)}, 6, "", time.Time{}, false},
		{"awaiting versions hold no slot", Policy{MaxConcurrent: 2}, PlanInput{Counts: counts(JobQueued, 3, JobAwaitingVersion, 5)}, 2, "", time.Time{}, false},
		{"before start", Policy{Start: ptime(now.Add(time.Hour))}, PlanInput{Counts: counts(JobQueued, 10)}, 0, HoldBeforeStart, now.Add(time.Hour), false},
		{"at start", Policy{Start: ptime(now)}, PlanInput{Counts: counts(JobQueued, 10)}, 10, "", time.Time{}, false},
		{"ended", Policy{End: ptime(now)}, PlanInput{Counts: counts(JobQueued, 10)}, 0, HoldEnded, time.Time{}, false},
		{"end ahead wakes", Policy{End: ptime(now.Add(time.Hour))}, PlanInput{Counts: counts(JobQueued, 10)}, 10, "", now.Add(time.Hour), false},
		{"window closed", Policy{Window: &Window{Start: "01:00", End: "05:00"}}, PlanInput{Counts: counts(JobQueued, 10), Location: time.UTC}, 0, HoldWindowClosed, now.Add(13 * time.Hour), false},
		{"window closed, end first", Policy{Window: &Window{Start: "01:00", End: "05:00"}, End: ptime(now.Add(time.Hour))}, PlanInput{Counts: counts(JobQueued, 10)}, 0, HoldWindowClosed, now.Add(time.Hour), false},
		{"window open", Policy{Window: &Window{Start: "10:00", End: "14:00"}}, PlanInput{Counts: counts(JobQueued, 10)}, 10, "", time.Time{}, false},
		{"window in zone", Policy{Window: &Window{Start: "10:00", End: "11:00", TZ: "Europe/Paris"}}, PlanInput{Counts: counts(JobQueued, 10)}, 0, HoldWindowClosed, now.Add(20 * time.Hour), false},
		{"window open in zone", Policy{Window: &Window{Start: "13:00", End: "15:00", TZ: "Europe/Paris"}}, PlanInput{Counts: counts(JobQueued, 10)}, 10, "", time.Time{}, false},
		{"concurrency headroom", Policy{MaxConcurrent: 5}, PlanInput{Counts: counts(JobQueued, 10, JobNotified, 1, JobInstalling, 2)}, 2, "", time.Time{}, false},
		{"concurrency full", Policy{MaxConcurrent: 3}, PlanInput{Counts: counts(JobQueued, 10, JobDownloading, 3)}, 0, HoldConcurrency, time.Time{}, false},
		{"fresh bucket bursts five seconds", Policy{Rate: 60}, PlanInput{Counts: counts(JobQueued, 100)}, 5, "", now.Add(time.Second), false},
		{"slow rate starts one", Policy{Rate: 2}, PlanInput{Counts: counts(JobQueued, 100)}, 1, "", now.Add(30 * time.Second), false},
		{"bucket refills", Policy{Rate: 60}, PlanInput{Counts: counts(JobQueued, 100), Bucket: RateBucket{At: now.Add(-3 * time.Second)}}, 3, "", now.Add(time.Second), false},
		{"bucket caps", Policy{Rate: 60}, PlanInput{Counts: counts(JobQueued, 100), Bucket: RateBucket{At: now.Add(-time.Hour)}}, 5, "", now.Add(time.Second), false},
		{"bucket empty", Policy{Rate: 60}, PlanInput{Counts: counts(JobQueued, 100), Bucket: RateBucket{Tokens: 0.5, At: now}}, 0, HoldRate, now.Add(500 * time.Millisecond), false},
		{"rate above queued", Policy{Rate: 600}, PlanInput{Counts: counts(JobQueued, 3), Bucket: full}, 3, "", time.Time{}, false},
		{"rate grown", Policy{Rate: 60, RateGrowth: 2, RateGrowthEvery: 10}, PlanInput{Counts: counts(JobQueued, 100, JobSucceeded, 20), Bucket: full}, 20, "", now.Add(time.Second / 4), false},
		{"all limits, concurrency least", Policy{Rate: 600, MaxConcurrent: 4}, PlanInput{Counts: counts(JobQueued, 100), Bucket: full}, 4, "", time.Time{}, false},
		{"all limits, rate least", Policy{Rate: 600, MaxConcurrent: 40}, PlanInput{Counts: counts(JobQueued, 100), Bucket: RateBucket{Tokens: 7.5, At: now}}, 7, "", now.Add(time.Second / 20), false},
		{"aborted", Policy{AbortFailure: 10}, PlanInput{Counts: counts(JobQueued, 10, JobFailed, 1)}, 0, HoldAborted, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now = now
			r := tt.p.Plan(tt.in)
			if r.Start != tt.start || r.Hold != tt.hold || !r.Wake.Equal(tt.wake) || r.Complete != tt.complete {
				t.Fatalf("Plan = start %d hold %q wake %s complete %v; want %d %q %s %v",
					r.Start, r.Hold, r.Wake, r.Complete, tt.start, tt.hold, tt.wake, tt.complete)
			}
		})
	}
}

func TestPlanExpired(t *testing.T) {
	now := t0
	p := Policy{End: ptime(now)}
	if r := p.Plan(PlanInput{Now: now.Add(-time.Nanosecond), Counts: counts(JobQueued, 1)}); r.Expired {
		t.Fatal("expired before the end")
	}
	if r := p.Plan(PlanInput{Now: now, Counts: counts(JobQueued, 1)}); !r.Expired || r.Start != 0 {
		t.Fatalf("at the end: Expired %v Start %d", r.Expired, r.Start)
	}
}

func TestPlanAbort(t *testing.T) {
	p := Policy{AbortFailure: 20, AbortMin: 10}
	tests := []struct {
		name  string
		c     map[JobState]int64
		abort bool
	}{
		{"too few finished", counts(JobFailed, 9), false},
		{"at threshold", counts(JobFailed, 1, JobTimedOut, 1, JobSucceeded, 8), true},
		{"below threshold", counts(JobFailed, 1, JobSucceeded, 9), false},
		{"rejections are not failures", counts(JobFailed, 1, JobRejected, 9), false},
		{"rejections count as finished", counts(JobFailed, 2, JobRejected, 8), true},
		{"cancelled are not finished", counts(JobFailed, 2, JobCancelled, 100), false},
		{"in flight are not finished", counts(JobFailed, 2, JobDownloading, 100), false},
	}
	for _, tt := range tests {
		r := p.Plan(PlanInput{Now: t0, Counts: tt.c})
		if r.Abort != tt.abort || r.Abort != (r.Reason != "") {
			t.Errorf("%s: Abort %v (%q), want %v", tt.name, r.Abort, r.Reason, tt.abort)
		}
	}
	if r := (Policy{}).Plan(PlanInput{Counts: counts(JobFailed, 100)}); r.Abort {
		t.Error("a policy without abort rule aborted")
	}
	r := Policy{AbortFailure: 50}.Plan(PlanInput{Counts: counts(JobFailed, 1)})
	if want := "1 of 1 finished jobs failed (100.0%), reaching the abort threshold of 50%"; r.Reason != want {
		t.Errorf("Reason = %q, want %q", r.Reason, want)
	}
}

func TestPlanPhases(t *testing.T) {
	auto := Policy{Phases: []float64{10, 50, 100}, PhaseSuccess: 90}
	manual := Policy{Phases: []float64{10, 50, 100}, PhaseSuccess: 90, PhaseGate: GateManual}
	settle := Policy{Phases: []float64{10, 100}}
	tests := []struct {
		name              string
		p                 Policy
		phase             int
		jobs, succ, fin   int64
		gateMet, advances bool
	}{
		{"auto met", auto, 0, 10, 9, 9, true, true},
		{"auto not met", auto, 0, 10, 8, 10, false, false},
		{"auto last phase", auto, 2, 100, 100, 100, true, false},
		{"manual met", manual, 0, 10, 10, 10, true, false},
		{"empty phase passes", auto, 1, 0, 0, 0, true, true},
		{"no threshold waits for all", settle, 0, 10, 2, 9, false, false},
		{"no threshold all finished", settle, 0, 10, 2, 10, true, true},
		{"no phases", Policy{}, 0, 10, 10, 10, false, false},
	}
	for _, tt := range tests {
		r := tt.p.Plan(PlanInput{Now: t0, Counts: counts(JobQueued, 5), Phase: tt.phase, PhaseJobs: tt.jobs, PhaseSucceeded: tt.succ, PhaseFinished: tt.fin})
		if r.PhaseGateMet != tt.gateMet || r.AdvancePhase != tt.advances {
			t.Errorf("%s: gate met %v advance %v, want %v %v", tt.name, r.PhaseGateMet, r.AdvancePhase, tt.gateMet, tt.advances)
		}
	}
}

// TestPlanRateOverTime drives Plan with irregular ticks, starting every job
// it allows, and checks that no minute sees more starts than the rate plus
// the burst, and that the long-run rate is the policy's.
func TestPlanRateOverTime(t *testing.T) {
	const rate = 120
	p := Policy{Rate: rate}
	r := rand.New(rand.NewPCG(3, 4))
	var bucket RateBucket
	var starts []time.Time
	now := t0
	for now.Before(t0.Add(30 * time.Minute)) {
		res := p.Plan(PlanInput{Now: now, Counts: counts(JobQueued, 1_000_000), Bucket: bucket})
		for range res.Start {
			starts = append(starts, now)
		}
		bucket = res.Bucket.Spend(res.Start)
		now = now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
	}
	limit := rate + int(burst(rate))
	for i := range starts {
		j := i
		for j < len(starts) && starts[j].Sub(starts[i]) < time.Minute {
			j++
		}
		if j-i > limit {
			t.Fatalf("%d starts in the minute from %s, limit %d", j-i, starts[i], limit)
		}
	}
	if n := len(starts); n < 30*rate-rate/10 || n > 30*rate+limit {
		t.Fatalf("%d starts in 30 minutes at %d per minute", n, rate)
	}
}
