package ota

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func ptime(t time.Time) *time.Time { return &t }

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		msg  string // "" for valid
	}{
		{"zero", Policy{}, ""},
		{"full", Policy{
			Start: ptime(t0), End: ptime(t0.Add(time.Hour)), Window: &Window{Start: "01:00", End: "05:00", TZ: "Europe/Paris"},
			Rate: 60, RateGrowth: 2, RateGrowthEvery: 100, MaxConcurrent: 500, Phases: []float64{1, 10, 100},
			PhaseSuccess: 95, PhaseGate: GateManual, Retries: 3, RetryBackoff: Duration(time.Minute),
			RetryOn: []string{CodeDownloadFailed, CodeTimedOut}, Timeout: Duration(time.Hour), AbortFailure: 10, AbortMin: 20, Confirm: ConfirmBoth,
		}, ""},
		{"end before start", Policy{Start: ptime(t0), End: ptime(t0)}, "is not after start"},
		{"bad window", Policy{Window: &Window{Start: "1", End: "05:00"}}, `window start "1" is not HH:MM`},
		{"bad zone", Policy{Window: &Window{Start: "01:00", End: "05:00", TZ: "Nowhere"}}, "unknown time zone"},
		{"short timeout", Policy{Timeout: Duration(time.Millisecond)}, "below the minimum"},
		{"negative rate", Policy{Rate: -1}, "rate -1 must be between 0"},
		{"huge rate", Policy{Rate: MaxRate + 1}, "rate 1000001"},
		{"negative concurrency", Policy{MaxConcurrent: -5}, "max_concurrent -5"},
		{"growth below 1", Policy{Rate: 10, RateGrowth: 0.5, RateGrowthEvery: 10}, "rate_growth 0.5 must be between 1"},
		{"growth NaN", Policy{Rate: 10, RateGrowth: math.NaN(), RateGrowthEvery: 10}, "rate_growth NaN"},
		{"growth without every", Policy{Rate: 10, RateGrowth: 2}, "needs rate_growth_every"},
		{"growth without rate", Policy{RateGrowth: 2, RateGrowthEvery: 10}, "needs a rate"},
		{"every without growth", Policy{Rate: 10, RateGrowthEvery: 10}, "rate_growth 0 must be between 1"},
		{"phases not increasing", Policy{Phases: []float64{10, 10, 100}}, "phase 2 (10%) is not above phase 1"},
		{"phases not ending at 100", Policy{Phases: []float64{1, 50}}, "the last phase is 50%"},
		{"phase zero", Policy{Phases: []float64{0, 100}}, "phase 1 is 0%"},
		{"phase over 100", Policy{Phases: []float64{50, 150}}, "phase 2 is 150%"},
		{"phase NaN", Policy{Phases: []float64{math.NaN(), 100}}, "phase 1 is NaN%"},
		{"too many phases", Policy{Phases: make([]float64, MaxPhases+1)}, "give 1 to 20"},
		{"phase success over 100", Policy{Phases: []float64{100}, PhaseSuccess: 101}, "phase_success 101"},
		{"unknown gate", Policy{Phases: []float64{100}, PhaseGate: "vote"}, `phase_gate "vote"`},
		{"gate without phases", Policy{PhaseGate: GateManual}, "need phases"},
		{"negative retries", Policy{Retries: -1}, "retries -1"},
		{"backoff without retries", Policy{RetryBackoff: Duration(time.Second)}, "need retries > 0"},
		{"retry_on without retries", Policy{RetryOn: []string{CodeTimedOut}}, "need retries > 0"},
		{"huge backoff", Policy{Retries: 1, RetryBackoff: Duration(48 * time.Hour)}, "retry_backoff 48h0m0s"},
		{"bad retry code", Policy{Retries: 1, RetryOn: []string{"Timed Out"}}, `retry_on code "Timed Out"`},
		{"duplicate retry code", Policy{Retries: 1, RetryOn: []string{"a", "a"}}, "lists a twice"},
		{"abort over 100", Policy{AbortFailure: 120}, "abort_failure 120"},
		{"negative abort min", Policy{AbortFailure: 5, AbortMin: -1}, "abort_min -1"},
		{"abort min alone", Policy{AbortMin: 10}, "abort_min needs abort_failure"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if tt.msg == "" && err != nil || tt.msg != "" && (ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.msg)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.msg)
		}
	}
}

func TestPolicyValidateReportsAll(t *testing.T) {
	err := Policy{Rate: -1, Retries: -1, AbortFailure: 200}.Validate()
	var e *Error
	if !errors.As(err, &e) || len(e.Fields) != 3 {
		t.Fatalf("Validate() = %#v, want 3 field errors", err)
	}
	want := []string{"policy.rate", "policy.retries", "policy.abort_failure"}
	if got := fieldsOf(err); !slices.Equal(got, want) {
		t.Errorf("fields %v, want %v", got, want)
	}
	if e.Message != e.Fields[0].Message+"; "+e.Fields[1].Message+"; "+e.Fields[2].Message {
		t.Errorf("message %q does not join the field errors", e.Message)
	}
}

func TestParsePercent(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		msg  string
	}{
		{"5%", 5, ""},
		{"5", 5, ""},
		{" 0.5% ", 0.5, ""},
		{"5 %", 5, ""},
		{"100%", 100, ""},
		{"0%", 0, "must be above 0% and at most 100%"},
		{"100.1", 0, "at most 100%"},
		{"-5%", 0, "is not a number"},
		{"1e2", 0, "is not a number"},
		{"NaN", 0, "is not a number"},
		{"Inf%", 0, "is not a number"},
		{"0x10", 0, "is not a number"},
		{"5%%", 0, "is not a number"},
		{"", 0, "is not a number"},
		{".5", 0, "is not a number"},
		{"5.", 0, "is not a number"},
	}
	for _, tt := range tests {
		got, err := ParsePercent(tt.in)
		if tt.msg == "" && (err != nil || got != tt.want) || tt.msg != "" && (ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.msg)) {
			t.Errorf("ParsePercent(%q) = %g, %v; want %g %q", tt.in, got, err, tt.want, tt.msg)
		}
	}
}

func TestParsePhases(t *testing.T) {
	tests := []struct {
		in   string
		want []float64
		msg  string
	}{
		{"1%,10%,100%", []float64{1, 10, 100}, ""},
		{"0.5, 5, 50%, 100", []float64{0.5, 5, 50, 100}, ""},
		{"100%", []float64{100}, ""},
		{"", nil, "phase 1: percent"},
		{"1%,,100%", nil, "phase 2: percent"},
		{"10%,5%,100%", nil, "phase 2 (5%) is not above phase 1 (10%)"},
		{"1%,10%", nil, "the last phase is 10%"},
		{strings.Repeat("1,", 30) + "100", nil, "at most 20"},
	}
	for _, tt := range tests {
		got, err := ParsePhases(tt.in)
		if tt.msg == "" && (err != nil || !slices.Equal(got, tt.want)) || tt.msg != "" && (ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.msg)) {
			t.Errorf("ParsePhases(%q) = %v, %v; want %v %q", tt.in, got, err, tt.want, tt.msg)
		}
	}
}

func FuzzParsePercent(f *testing.F) {
	for _, s := range []string{"5%", "0.5", "100", "0", "1e3", "NaN", "-1%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParsePercent(s)
		if err != nil {
			if ErrorCode(err) != EINVALID {
				t.Fatalf("ParsePercent(%q) error %v is not EINVALID", s, err)
			}
			return
		}
		if !(v > 0 && v <= 100) {
			t.Fatalf("ParsePercent(%q) = %g, outside (0, 100]", s, v)
		}
	})
}

func FuzzParsePhases(f *testing.F) {
	for _, s := range []string{"1%,10%,100%", "100", "50,50,100", "1,2,3", " 5 %, 100 %"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		phases, err := ParsePhases(s)
		if err != nil {
			if ErrorCode(err) != EINVALID {
				t.Fatalf("ParsePhases(%q) error %v is not EINVALID", s, err)
			}
			return
		}
		if err := (Policy{Phases: phases}).Validate(); err != nil {
			t.Fatalf("ParsePhases(%q) = %v, which Validate refuses: %v", s, phases, err)
		}
		for total := range 50 {
			checkPhaseOf(t, total, phases)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	p := Policy{Retries: 3, RetryBackoff: Duration(time.Minute)}
	only := Policy{Retries: 3, RetryBackoff: Duration(time.Minute), RetryOn: []string{CodeDownloadFailed}}
	big := Policy{Retries: 40, RetryBackoff: Duration(time.Hour)}
	job := func(s JobState, code string, attempt int) Job { return Job{State: s, Code: code, Attempt: attempt} }
	tests := []struct {
		name string
		p    Policy
		j    Job
		want time.Duration
		ok   bool
	}{
		{"first retry", p, job(JobFailed, CodeInstallFailed, 1), time.Minute, true},
		{"second retry doubles", p, job(JobFailed, CodeInstallFailed, 2), 2 * time.Minute, true},
		{"third retry", p, job(JobTimedOut, CodeTimedOut, 3), 4 * time.Minute, true},
		{"out of retries", p, job(JobFailed, CodeInstallFailed, 4), 0, false},
		{"no retries", Policy{}, job(JobFailed, CodeInstallFailed, 1), 0, false},
		{"listed code", only, job(JobFailed, CodeDownloadFailed, 1), time.Minute, true},
		{"unlisted code", only, job(JobFailed, CodeRolledBack, 1), 0, false},
		{"unlisted timeout", only, job(JobTimedOut, "", 1), 0, false},
		{"timeout listed", Policy{Retries: 1, RetryOn: []string{CodeTimedOut}}, job(JobTimedOut, "", 1), 0, true},
		{"rejected", p, job(JobRejected, "", 1), 0, false},
		{"succeeded", p, job(JobSucceeded, "", 1), 0, false},
		{"cancelled", p, job(JobCancelled, CodeTaskCancelled, 1), 0, false},
		{"active", p, job(JobDownloading, "", 1), 0, false},
		{"capped", big, job(JobFailed, "", 36), MaxRetryBackoff, true},
	}
	for _, tt := range tests {
		got, ok := tt.p.RetryAfter(tt.j)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: RetryAfter = %s, %v; want %s, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestEffectiveRate(t *testing.T) {
	p := Policy{Rate: 10, RateGrowth: 2, RateGrowthEvery: 100}
	tests := []struct {
		p         Policy
		succeeded int64
		want      float64
	}{
		{p, 0, 10},
		{p, 99, 10},
		{p, 100, 20},
		{p, 250, 40},
		{p, 1 << 40, MaxRate},
		{Policy{Rate: 10}, 1000, 10},
		{Policy{}, 1000, 0},
	}
	for _, tt := range tests {
		if got := tt.p.EffectiveRate(tt.succeeded); got != tt.want {
			t.Errorf("EffectiveRate(%d) = %g, want %g", tt.succeeded, got, tt.want)
		}
	}
}

// TestConfirmModeReadsStoredPolicies: policies stored before the modes
// existed said "confirm": true for a confirmation before the download.
func TestConfirmModeReadsStoredPolicies(t *testing.T) {
	tests := []struct {
		json string
		want ConfirmMode
		ok   bool
	}{
		{`{"confirm":true}`, ConfirmDownload, true},
		{`{"confirm":false}`, "", true},
		{`{}`, "", true},
		{`{"confirm":"install"}`, ConfirmInstall, true},
		{`{"confirm":"both"}`, ConfirmBoth, true},
		{`{"confirm":"none"}`, ConfirmNone, true},
		{`{"confirm":"sometimes"}`, "sometimes", false},
		{`{"confirm":3}`, "", false},
	}
	for _, tt := range tests {
		var p Policy
		err := json.Unmarshal([]byte(tt.json), &p)
		if err == nil {
			err = p.Validate()
		}
		if (err == nil) != tt.ok || (err == nil && p.Confirm != tt.want) {
			t.Errorf("%s: confirm %q, err %v; want %q, ok %v", tt.json, p.Confirm, err, tt.want, tt.ok)
		}
	}
	for _, m := range []ConfirmMode{"", ConfirmNone, ConfirmDownload, ConfirmInstall, ConfirmBoth} {
		if got, want := m.BeforeDownload(), m == ConfirmDownload || m == ConfirmBoth; got != want {
			t.Errorf("%q.BeforeDownload() = %v", m, got)
		}
		if got, want := m.BeforeInstall(), m == ConfirmInstall || m == ConfirmBoth; got != want {
			t.Errorf("%q.BeforeInstall() = %v", m, got)
		}
	}
}
