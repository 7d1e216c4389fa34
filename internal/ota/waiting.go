package ota

import (
	"fmt"
	"strconv"
	"time"
)

// HoldPhaseGate says the released phases have nothing left to start or
// finish while later phases wait for the phase gate: an operator's advance
// (manual gate) or a success rate the phase has not reached.
const HoldPhaseGate = "phase_gate"

// Waiting says what a task that starts no job waits for, and when it
// resumes. The engine works it out from the plan of each tick; the API,
// the CLI and the console show it beside the task's state.
type Waiting struct {
	// Reason is one of HoldBeforeStart, HoldWindowClosed, HoldRate,
	// HoldConcurrency and HoldPhaseGate.
	Reason string `json:"reason"`
	// Until is when the task resumes by itself, in TimeZone; nil when it
	// resumes on an event (a job ends, an operator advances the phase).
	Until *time.Time `json:"until,omitempty"`
	// TimeZone is the zone of the policy's daily window (UTC without one):
	// the zone the operator thinks of the times in.
	TimeZone string `json:"time_zone"`
	// Message says it in words.
	Message string `json:"message"`
}

// WaitInput is what Waiting needs beyond the plan.
type WaitInput struct {
	Now time.Time
	// Location is the window's zone (Window.Location); nil: UTC.
	Location *time.Location
	// Scheduled says the task has not started: it waits for Policy.Start.
	Scheduled bool
	// Phase is the index of the released phase; GateHeld says the released
	// phases have no job queued or in flight while later phases have.
	Phase    int
	GateHeld bool
	// PhaseSucceeded, PhaseFinished and PhaseJobs count the released
	// phase's jobs.
	PhaseSucceeded, PhaseFinished, PhaseJobs int64
}

// Waiting returns what a task with plan r waits for, or nil when it is
// not held by its policy (it may still wait for offline devices).
func (p Policy) Waiting(in WaitInput, r PlanResult) *Waiting {
	loc := in.Location
	if loc == nil {
		loc = time.UTC
	}
	w := &Waiting{TimeZone: loc.String()}
	switch {
	case in.Scheduled || r.Hold == HoldBeforeStart:
		if p.Start == nil {
			return nil
		}
		w.Reason, w.Until = HoldBeforeStart, at(*p.Start, loc)
		w.Message = "the task starts at " + clock(*w.Until)
	case r.Hold == HoldWindowClosed:
		w.Reason, w.Until = HoldWindowClosed, at(p.Window.NextOpen(in.Now, loc), loc)
		w.Message = fmt.Sprintf("outside the daily window %s-%s (%s): jobs start again at %s", p.Window.Start, p.Window.End, w.TimeZone, clock(*w.Until))
	case r.Hold == HoldRate:
		w.Reason, w.Until = HoldRate, at(r.Bucket.after(0, r.Rate), loc)
		w.Message = fmt.Sprintf("the rate limit of %s jobs a minute is spent: the next job starts at %s", strconv.FormatFloat(r.Rate, 'f', -1, 64), clock(*w.Until))
	case r.Hold == HoldConcurrency:
		w.Reason = HoldConcurrency
		w.Message = fmt.Sprintf("%d jobs are in flight, the most the policy allows: the next starts when one ends", p.MaxConcurrent)
	case in.GateHeld:
		w.Reason = HoldPhaseGate
		w.Message = p.gateMessage(in, r)
	default:
		return nil
	}
	return w
}

func (p Policy) gateMessage(in WaitInput, r PlanResult) string {
	phase := fmt.Sprintf("phase %d of %d", in.Phase+1, len(p.Phases))
	if r.PhaseGateMet {
		return phase + " is done: the next phase starts when an operator advances the task (otter task advance)"
	}
	pct := 0.0
	if in.PhaseJobs > 0 {
		pct = float64(in.PhaseSucceeded) * 100 / float64(in.PhaseJobs)
	}
	// With the gate held, a job of the phase that has not ended is neither
	// queued nor in flight: it awaits its device's first version report,
	// which may never come (a device that was never connected).
	if waiting := in.PhaseJobs - in.PhaseFinished; waiting > 0 {
		rate := ""
		if p.PhaseSuccess > 0 {
			rate = fmt.Sprintf(" (%.1f%% succeeded, below the gate's %g%%)", pct, p.PhaseSuccess)
		}
		jobs, it, them := "1 job whose device has", "it reports", "the job"
		if waiting > 1 {
			jobs, it, them = fmt.Sprintf("%d jobs whose devices have", waiting), "they report", "those jobs"
		}
		return fmt.Sprintf("%s%s waits for %s not reported a version yet (awaiting_version): the phase goes on when %s; to go on without waiting, advance the task (otter task advance) or cancel %s (otter task cancel-devices)", phase, rate, jobs, it, them)
	}
	return fmt.Sprintf("%s ended with %.1f%% succeeded, below the gate's %g%%: retry the failed jobs or advance the task by hand", phase, pct, p.PhaseSuccess)
}

func at(t time.Time, loc *time.Location) *time.Time {
	t = t.In(loc)
	return &t
}

// clock formats a time for a message, with its zone's abbreviation.
func clock(t time.Time) string { return t.Format("2006-01-02 15:04 MST") }
