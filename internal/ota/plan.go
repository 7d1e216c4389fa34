package ota

import (
	"fmt"
	"math"
	"time"
)

// RateBucket is a task's rate limiter: a token bucket the engine keeps
// between ticks (in the task's engine state, so it survives a failover).
// The zero value is a full bucket.
type RateBucket struct {
	Tokens float64   `json:"tokens"`
	At     time.Time `json:"at"`
}

// Spend returns the bucket after n jobs started from it.
func (b RateBucket) Spend(n int) RateBucket {
	b.Tokens -= float64(n)
	return b
}

// burst is the most a bucket holds: five seconds' worth of starts (at least
// one), so that starts flow steadily and a late tick loses nothing, while
// any minute sees at most rate*13/12 starts.
func burst(rate float64) float64 { return max(1, rate/12) }

// refill returns the bucket at now under rate jobs per minute.
func (b RateBucket) refill(rate float64, now time.Time) RateBucket {
	if b.At.IsZero() {
		return RateBucket{Tokens: burst(rate), At: now}
	}
	if elapsed := now.Sub(b.At); elapsed > 0 {
		b.Tokens += elapsed.Minutes() * rate
	}
	b.Tokens = min(b.Tokens, burst(rate))
	b.At = now
	return b
}

// after returns when the bucket will hold n+1 tokens, so that one more job
// may start after n are spent now.
func (b RateBucket) after(n int, rate float64) time.Time {
	missing := float64(n) + 1 - b.Tokens
	if missing <= 0 {
		return b.At
	}
	return b.At.Add(time.Duration(math.Ceil(missing / rate * float64(time.Minute))))
}

// Holds say why a plan starts no job although some are queued.
const (
	HoldBeforeStart  = "before_start"  // the policy's start time is ahead
	HoldEnded        = "ended"         // the policy's end time passed
	HoldWindowClosed = "window_closed" // outside the daily window
	HoldConcurrency  = "concurrency"   // max_concurrent jobs are in flight
	HoldRate         = "rate"          // the rate budget is spent
	HoldAborted      = "aborted"       // the abort rule triggered
)

// PlanInput is what the engine knows about one running task at one tick.
type PlanInput struct {
	Now time.Time
	// Location is the window's time zone from Window.Location; when nil,
	// Plan resolves it itself (reading tzdata each call).
	Location *time.Location
	// Counts holds the task's jobs per state.
	Counts map[JobState]int64
	// Phase is the index of the phase now released (Task.Phase).
	Phase int
	// PhaseJobs, PhaseSucceeded and PhaseFinished count the jobs of phase
	// Phase: all of them, the succeeded ones, and the terminal ones.
	PhaseJobs, PhaseSucceeded, PhaseFinished int64
	// Bucket is the rate bucket kept from the previous tick.
	Bucket RateBucket
	// Dynamic tasks take devices that come to match while they run, so
	// they never complete by running out of jobs.
	Dynamic bool
}

// PlanResult is what the engine should do for a task now.
type PlanResult struct {
	// Start is how many queued jobs may start now. The engine takes them
	// from released phases (phase <= Task.Phase) in rollout order, skipping
	// jobs whose NextAttemptAt is ahead and jobs still awaiting their
	// device's version; it may start fewer.
	Start int
	// Hold says why Start is 0 while jobs are queued ("" otherwise).
	Hold string
	// Rate is the rate limit in force, in jobs per minute (0: none).
	Rate float64
	// Bucket is the refilled rate bucket: keep Bucket.Spend(started).
	Bucket RateBucket
	// PhaseGateMet says the current phase reached its gate (shown to the
	// operator of a manual gate); AdvancePhase says the engine should
	// release the next phase now (automatic gate, not the last phase).
	PhaseGateMet bool
	AdvancePhase bool
	// Abort says the abort rule triggered; Reason says why, for the task.
	Abort  bool
	Reason string
	// Expired says the end time passed: cancel the queued jobs with code
	// window_closed; jobs in flight run to their end.
	Expired bool
	// Complete says no job is queued, awaiting its device's version or in
	// flight, and the task is not dynamic: it is done.
	Complete bool
	// Wake is when to plan again if nothing else happens (next start
	// time, window opening, rate slot or end time); zero: only on a job
	// change.
	Wake time.Time
}

// Plan evaluates p for a running task at in.Now. It is a pure function of
// its input; the engine calls it every tick and on job changes.
func (p Policy) Plan(in PlanInput) PlanResult {
	r := PlanResult{Rate: p.EffectiveRate(in.Counts[JobSucceeded]), Bucket: in.Bucket}
	if r.Rate > 0 {
		r.Bucket = in.Bucket.refill(r.Rate, in.Now)
	}
	r.Abort, r.Reason = p.abort(in.Counts)
	r.PhaseGateMet = p.phaseGateMet(in)
	r.AdvancePhase = r.PhaseGateMet && p.PhaseGate != GateManual && in.Phase < len(p.Phases)-1 && !r.Abort
	r.Expired = p.End != nil && !in.Now.Before(*p.End)
	r.Complete = in.Counts[JobQueued] == 0 && in.Counts[JobAwaitingVersion] == 0 && InFlight(in.Counts) == 0 && !in.Dynamic
	r.Start, r.Hold, r.Wake = p.starts(in, r)
	if p.End != nil && in.Now.Before(*p.End) {
		r.Wake = earliest(r.Wake, *p.End)
	}
	return r
}

// starts decides how many jobs may start, or why none, and when a held
// task may start more.
func (p Policy) starts(in PlanInput, r PlanResult) (int, string, time.Time) {
	// A job awaiting its device's version may be queued and started in the
	// same batch (a device that asks with its version), so it counts.
	queued := in.Counts[JobQueued] + in.Counts[JobAwaitingVersion]
	switch {
	case queued <= 0:
		return 0, "", time.Time{}
	case r.Abort:
		return 0, HoldAborted, time.Time{}
	case r.Expired:
		return 0, HoldEnded, time.Time{}
	case p.Start != nil && in.Now.Before(*p.Start):
		return 0, HoldBeforeStart, *p.Start
	}
	if p.Window != nil {
		loc := in.Location
		if loc == nil {
			loc, _ = p.Window.Location() // nil (UTC) only for a policy Validate refuses
		}
		if !p.Window.Contains(in.Now, loc) {
			return 0, HoldWindowClosed, p.Window.NextOpen(in.Now, loc)
		}
	}
	return p.budget(in, r, queued)
}

// budget applies the concurrency and rate limits to the queued jobs. When
// the rate is what holds jobs back, it wakes when the next token comes.
func (p Policy) budget(in PlanInput, r PlanResult, queued int64) (int, string, time.Time) {
	n := min(queued, math.MaxInt32)
	if p.MaxConcurrent > 0 {
		n = min(n, int64(p.MaxConcurrent)-InFlight(in.Counts))
		if n <= 0 {
			return 0, HoldConcurrency, time.Time{}
		}
	}
	if r.Rate <= 0 || float64(n) <= r.Bucket.Tokens {
		return int(n), "", time.Time{}
	}
	n = int64(math.Floor(r.Bucket.Tokens))
	if n <= 0 {
		return 0, HoldRate, r.Bucket.after(0, r.Rate)
	}
	return int(n), "", r.Bucket.after(int(n), r.Rate)
}

// abort applies the abort rule: among at least AbortMin finished jobs
// (succeeded, failed, rejected, timed out), the failed and timed-out ones
// reach AbortFailure percent. Rejections finish a job but are the device
// owner's choice, not a sign of bad firmware, so they do not count as
// failures.
func (p Policy) abort(c map[JobState]int64) (bool, string) {
	if p.AbortFailure <= 0 {
		return false, ""
	}
	failed := c[JobFailed] + c[JobTimedOut]
	finished := failed + c[JobSucceeded] + c[JobRejected]
	if finished < max(int64(p.AbortMin), 1) || float64(failed)*100 < p.AbortFailure*float64(finished) {
		return false, ""
	}
	return true, fmt.Sprintf("%d of %d finished jobs failed (%.1f%%), reaching the abort threshold of %g%%",
		failed, finished, float64(failed)*100/float64(finished), p.AbortFailure)
}

// phaseGateMet reports whether the current phase may give way to the next:
// its succeeded share reached PhaseSuccess, or, with PhaseSuccess 0, all
// its jobs finished. An empty phase passes at once.
func (p Policy) phaseGateMet(in PlanInput) bool {
	switch {
	case len(p.Phases) == 0:
		return false
	case in.PhaseJobs <= 0:
		return true
	case p.PhaseSuccess <= 0:
		return in.PhaseFinished >= in.PhaseJobs
	}
	return float64(in.PhaseSucceeded)*100 >= p.PhaseSuccess*float64(in.PhaseJobs)
}

// InFlight sums the jobs of counts that started and have not ended.
func InFlight(c map[JobState]int64) int64 {
	var n int64
	for s, k := range c {
		if s.InFlight() && s.Valid() {
			n += k
		}
	}
	return n
}

// earliest returns the earlier of a and b, ignoring zero times.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}
