package ota

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Phase gates: how a task moves from one phase to the next.
const (
	GateAuto   = "auto"   // when the phase reaches PhaseSuccess
	GateManual = "manual" // when an operator advances it
)

// Bounds on policy fields, so a typo cannot make a task that never ends or
// a number that overflows.
const (
	MaxPhases       = 20
	MaxRetries      = 100
	MaxRate         = 1_000_000 // jobs per minute
	MaxRateGrowth   = 100
	MaxRetryBackoff = 24 * time.Hour
	MinTimeout      = time.Second
)

// Validate checks every field of p and reports all problems at once: an
// EINVALID *Error (see Invalid) with one FieldError per problem, each at
// the field's path in the API's request body ("policy.rate"). It does not
// compare times with the clock (see TaskSpec.Validate and Patch), and it
// reads tzdata (time.LoadLocation) to check a window's time zone.
func (p Policy) Validate() error { return invalid(p.problems()) }

func (p Policy) problems() []FieldError {
	var out []FieldError
	for _, check := range []func() []FieldError{p.checkSchedule, p.checkRate, p.checkPhases, p.checkRetries, p.checkAbort, p.checkConfirm} {
		out = append(out, check()...)
	}
	return out
}

// policyProblem is a problem of the policy field named: the field's path
// in a request body is "policy." and its JSON name.
func policyProblem(field, format string, args ...any) FieldError {
	return FieldError{Field: "policy." + field, Message: fmt.Sprintf(format, args...)}
}

// endProblem refuses an end time that is not after now: a task must end in
// the future. It is the one check of the rule, for new tasks and edits.
func endProblem(end *time.Time, now time.Time) []FieldError {
	if end == nil || end.After(now) {
		return nil
	}
	return []FieldError{policyProblem("end", "end %s is in the past: give a later end time, or none", end.UTC().Format(time.RFC3339))}
}

func (p Policy) checkConfirm() []FieldError {
	if !p.Confirm.Valid() {
		return []FieldError{policyProblem("confirm", "confirm %q must be none, download, install or both", p.Confirm)}
	}
	return nil
}

func (p Policy) checkSchedule() []FieldError {
	var out []FieldError
	if p.Start != nil && p.End != nil && !p.End.After(*p.Start) {
		out = append(out, policyProblem("end", "end %s is not after start %s", p.End.Format(time.RFC3339), p.Start.Format(time.RFC3339)))
	}
	if p.Window != nil {
		out = append(out, p.Window.problems("policy.window")...)
	}
	if p.Timeout != 0 && (time.Duration(p.Timeout) < MinTimeout) {
		out = append(out, policyProblem("timeout", "timeout %s is below the minimum of %s", time.Duration(p.Timeout), MinTimeout))
	}
	return out
}

func (p Policy) checkRate() []FieldError {
	var out []FieldError
	if p.Rate < 0 || p.Rate > MaxRate {
		out = append(out, policyProblem("rate", "rate %d must be between 0 (unlimited) and %d jobs per minute", p.Rate, MaxRate))
	}
	if p.MaxConcurrent < 0 {
		out = append(out, policyProblem("max_concurrent", "max_concurrent %d must not be negative (0 is unlimited)", p.MaxConcurrent))
	}
	switch {
	case p.RateGrowth == 0 && p.RateGrowthEvery == 0:
	case !(p.RateGrowth >= 1 && p.RateGrowth <= MaxRateGrowth):
		out = append(out, policyProblem("rate_growth", "rate_growth %g must be between 1 and %d, e.g. 2 to double", p.RateGrowth, MaxRateGrowth))
	case p.RateGrowthEvery <= 0:
		out = append(out, policyProblem("rate_growth", "rate_growth needs rate_growth_every: the number of successes after which the rate grows"))
	case p.Rate == 0:
		out = append(out, policyProblem("rate_growth", "rate_growth needs a rate to grow from"))
	}
	return out
}

func (p Policy) checkPhases() []FieldError {
	var out []FieldError
	if len(p.Phases) > 0 {
		if err := validatePhases(p.Phases); err != nil {
			out = append(out, fieldError("policy.phases", err))
		}
	}
	if !(p.PhaseSuccess >= 0 && p.PhaseSuccess <= 100) {
		out = append(out, policyProblem("phase_success", "phase_success %g must be a percentage between 0 and 100", p.PhaseSuccess))
	}
	if p.PhaseGate != "" && p.PhaseGate != GateAuto && p.PhaseGate != GateManual {
		out = append(out, policyProblem("phase_gate", "phase_gate %q must be auto or manual", p.PhaseGate))
	}
	if len(p.Phases) == 0 && (p.PhaseSuccess != 0 || p.PhaseGate != "") {
		field := "phase_success"
		if p.PhaseSuccess == 0 {
			field = "phase_gate"
		}
		out = append(out, policyProblem(field, "phase_success and phase_gate need phases, e.g. 1%%,10%%,100%%"))
	}
	return out
}

func (p Policy) checkRetries() []FieldError {
	var out []FieldError
	if p.Retries < 0 || p.Retries > MaxRetries {
		out = append(out, policyProblem("retries", "retries %d must be between 0 and %d", p.Retries, MaxRetries))
	}
	if p.RetryBackoff < 0 || time.Duration(p.RetryBackoff) > MaxRetryBackoff {
		out = append(out, policyProblem("retry_backoff", "retry_backoff %s must be between 0 and %s", time.Duration(p.RetryBackoff), MaxRetryBackoff))
	}
	if p.Retries == 0 && (p.RetryBackoff != 0 || len(p.RetryOn) > 0) {
		field := "retry_backoff"
		if p.RetryBackoff == 0 {
			field = "retry_on"
		}
		out = append(out, policyProblem(field, "retry_backoff and retry_on need retries > 0"))
	}
	for i, code := range p.RetryOn {
		if code == "" || len(code) > MaxCodeLen || !isCode(code) {
			out = append(out, policyProblem("retry_on", "retry_on code %s must be lowercase letters, digits or '_', e.g. %s", quoteInput(code), CodeDownloadFailed))
		} else if slices.Contains(p.RetryOn[:i], code) {
			out = append(out, policyProblem("retry_on", "retry_on lists %s twice", code))
		}
	}
	return out
}

func (p Policy) checkAbort() []FieldError {
	var out []FieldError
	if !(p.AbortFailure >= 0 && p.AbortFailure <= 100) {
		out = append(out, policyProblem("abort_failure", "abort_failure %g must be a percentage between 0 and 100", p.AbortFailure))
	}
	if p.AbortMin < 0 {
		out = append(out, policyProblem("abort_min", "abort_min %d must not be negative", p.AbortMin))
	}
	if p.AbortMin > 0 && p.AbortFailure == 0 {
		out = append(out, policyProblem("abort_min", "abort_min needs abort_failure: the failure percentage that aborts the task"))
	}
	return out
}

// validatePhases checks cumulative phase percentages: each in (0, 100],
// strictly increasing, the last 100.
func validatePhases(phases []float64) error {
	if len(phases) == 0 || len(phases) > MaxPhases {
		return Errorf(EINVALID, "phases: give 1 to %d cumulative percentages ending at 100, e.g. 1%%,10%%,100%%", MaxPhases)
	}
	for i, ph := range phases {
		switch {
		case !(ph > 0 && ph <= 100):
			return Errorf(EINVALID, "phase %d is %g%%: each phase must be above 0%% and at most 100%%", i+1, ph)
		case i > 0 && ph <= phases[i-1]:
			return Errorf(EINVALID, "phase %d (%g%%) is not above phase %d (%g%%): phases are cumulative and must increase", i+1, ph, i, phases[i-1])
		}
	}
	if last := phases[len(phases)-1]; last != 100 {
		return Errorf(EINVALID, "the last phase is %g%%: it must be 100%% so that every targeted device is reached", last)
	}
	return nil
}

// ParsePercent parses an operator's percentage, "5%", "0.5%" or "5",
// into a number in (0, 100].
func ParsePercent(s string) (float64, error) {
	v, err := parseNumber(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")))
	if err != nil {
		return 0, Errorf(EINVALID, "percent %s is not a number: use e.g. 5%% or 0.5%%", quoteInput(s))
	}
	if !(v > 0 && v <= 100) {
		return 0, Errorf(EINVALID, "percent %s must be above 0%% and at most 100%%", quoteInput(s))
	}
	return v, nil
}

// parseNumber accepts only plain decimals ("12", "0.5"): no sign, exponent,
// hex, NaN or Inf, which strconv.ParseFloat would take.
func parseNumber(s string) (float64, error) {
	whole, frac, hasDot := strings.Cut(s, ".")
	if !isDigits(whole) || hasDot && !isDigits(frac) || len(s) > 20 {
		return 0, fmt.Errorf("not a plain decimal: %q", s)
	}
	return strconv.ParseFloat(s, 64)
}

// ParsePhases parses an operator's cumulative phases, "1%,10%,100%" (the %
// signs are optional), and checks them as Policy.Validate does.
func ParsePhases(s string) ([]float64, error) {
	parts := strings.Split(s, ",")
	if len(parts) > MaxPhases {
		return nil, Errorf(EINVALID, "phases: at most %d are allowed, got %d", MaxPhases, len(parts))
	}
	phases := make([]float64, len(parts))
	for i, part := range parts {
		v, err := ParsePercent(part)
		if err != nil {
			return nil, Errorf(EINVALID, "phase %d: %s", i+1, ErrorMessage(err))
		}
		phases[i] = v
	}
	if err := validatePhases(phases); err != nil {
		return nil, err
	}
	return phases, nil
}

// RetryAfter reports whether a failed or timed-out job should be retried
// under p, and after what backoff: RetryBackoff doubled for each retry
// already made (job.Attempt counts from 1), at most MaxRetryBackoff.
// Retries are allowed while fewer than Retries were made and, when RetryOn
// is set, only for the codes it lists (timed-out jobs carry the code
// timed_out).
func (p Policy) RetryAfter(job Job) (time.Duration, bool) {
	code := job.Code
	switch job.State {
	case JobFailed:
	case JobTimedOut:
		code = CodeTimedOut
	default:
		return 0, false
	}
	retried := max(job.Attempt-1, 0)
	if retried >= p.Retries || len(p.RetryOn) > 0 && !slices.Contains(p.RetryOn, code) {
		return 0, false
	}
	return backoff(time.Duration(p.RetryBackoff), retried), true
}

func backoff(base time.Duration, attempt int) time.Duration {
	d := min(base, MaxRetryBackoff)
	for range attempt {
		if d >= MaxRetryBackoff/2 {
			return MaxRetryBackoff
		}
		d *= 2
	}
	return d
}

// EffectiveRate returns the rate limit in jobs per minute once succeeded
// jobs have grown it (Rate times RateGrowth for every RateGrowthEvery
// successes), at most MaxRate; 0 means unlimited.
func (p Policy) EffectiveRate(succeeded int64) float64 {
	if p.Rate <= 0 {
		return 0
	}
	rate := float64(p.Rate)
	if p.RateGrowth > 1 && p.RateGrowthEvery > 0 && succeeded > 0 {
		rate *= math.Pow(p.RateGrowth, float64(succeeded/int64(p.RateGrowthEvery)))
	}
	return min(rate, MaxRate)
}
