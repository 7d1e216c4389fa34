package ota

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// fieldsOf lists the fields of err's field errors, in order; nil for nil.
func fieldsOf(err error) []string {
	var e *Error
	if !errors.As(err, &e) {
		return nil
	}
	out := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f.Field
	}
	return out
}

func TestTaskSpecValidate(t *testing.T) {
	base := func() TaskSpec {
		return TaskSpec{FirmwareID: 3, Mode: ModePush, Target: Target{All: true}}
	}
	past, future := t0.Add(-time.Minute), t0.Add(time.Hour)
	tests := []struct {
		name   string
		edit   func(s *TaskSpec)
		fields []string // nil: valid
		msg    string   // in the message of the first field error
	}{
		{"minimal", func(*TaskSpec) {}, nil, ""},
		{"full", func(s *TaskSpec) {
			s.Name, s.Mode, s.Verification = "spring\trollout\n", ModeRequest, true
			s.Target = Target{Devices: []string{"d1", "d-2.x_y"}, Tags: map[string]string{"site": "paris"},
				FromVersions: []string{"1.0.0"}, Percent: 50, Dynamic: true, SkipBusy: true}
			s.Policy = Policy{Start: &t0, End: &future, Phases: []float64{10, 100}, Retries: 2}
		}, nil, ""},
		{"long name", func(s *TaskSpec) { s.Name = strings.Repeat("n", MaxNameLen+1) }, []string{"name"}, "task name is 201 bytes long: at most 200 are allowed"},
		{"name of 200 bytes", func(s *TaskSpec) { s.Name = strings.Repeat("n", MaxNameLen) }, nil, ""},
		{"control character in name", func(s *TaskSpec) { s.Name = "a\x00b" }, []string{"name"}, "task name contains control characters"},
		{"name not UTF-8", func(s *TaskSpec) { s.Name = "\xff" }, []string{"name"}, "task name is not valid UTF-8"},
		{"no firmware", func(s *TaskSpec) { s.FirmwareID = 0 }, []string{"firmware_id"}, "firmware_id 0 is not a firmware id"},
		{"no mode", func(s *TaskSpec) { s.Mode = "" }, []string{"mode"}, `mode "" is not one of push, request`},
		{"unknown mode", func(s *TaskSpec) { s.Mode = "pull" }, []string{"mode"}, `mode "pull"`},
		{"no target", func(s *TaskSpec) { s.Target = Target{} }, []string{"target"}, "the target selects no device"},
		{"percent alone", func(s *TaskSpec) { s.Target = Target{Percent: 10} }, []string{"target"}, "percent and dynamic only narrow"},
		{"percent over 100", func(s *TaskSpec) { s.Target.Percent = 150 }, []string{"target.percent"}, "target percent 150"},
		{"bad device key", func(s *TaskSpec) { s.Target = Target{Devices: []string{"d1", "a/b"}} }, []string{"target.devices"}, "target device 2: device key \"a/b\" is not valid"},
		{"device twice", func(s *TaskSpec) { s.Target = Target{Devices: []string{"d1", "d1"}} }, []string{"target.devices"}, `target lists device "d1" twice`},
		{"bad tag", func(s *TaskSpec) { s.Target.Tags = map[string]string{"-x": "1"} }, []string{"target.tags"}, `tag name "-x" is not valid`},
		{"bad from-version", func(s *TaskSpec) { s.Target.FromVersions = []string{"1 0"} }, []string{"target.from_versions"}, "whitespace"},
		{"verification without a list", func(s *TaskSpec) { s.Verification = true }, []string{"target.devices"}, "a verification task runs on an explicit device list"},
		{"end in the past", func(s *TaskSpec) { s.Policy.End = &past }, []string{"policy.end"}, "end 2025-03-01T11:59:00Z is in the past: give a later end time, or none"},
		{"end now", func(s *TaskSpec) { s.Policy.End = &t0 }, []string{"policy.end"}, "is in the past"},
		{"end before start", func(s *TaskSpec) { s.Policy.Start, s.Policy.End = &future, &future }, []string{"policy.end"}, "is not after start"},
		{"bad window", func(s *TaskSpec) { s.Policy.Window = &Window{Start: "1", End: "5", TZ: "Nowhere"} },
			[]string{"policy.window.start", "policy.window.end", "policy.window.tz"}, `window start "1" is not HH:MM`},
		{"empty window", func(s *TaskSpec) { s.Policy.Window = &Window{Start: "01:00", End: "01:00"} }, []string{"policy.window"}, "is empty"},
		{"policy rules", func(s *TaskSpec) {
			s.Policy = Policy{RateGrowth: 2, RateGrowthEvery: 5, PhaseGate: GateManual, RetryOn: []string{"x"}}
		},
			[]string{"policy.rate_growth", "policy.phase_gate", "policy.retry_on"}, "rate_growth needs a rate to grow from"},
		{"every problem at once", func(s *TaskSpec) {
			s.Name, s.Mode, s.Verification = "\x07", "", true
			s.Target = Target{Percent: -1}
			s.Policy = Policy{End: &past, Rate: -1, AbortMin: 3}
		}, []string{"name", "mode", "target", "target.percent", "target.devices", "policy.rate", "policy.abort_min", "policy.end"}, "task name contains control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.edit(&s)
			err := s.Validate(t0)
			if got := fieldsOf(err); !slices.Equal(got, tt.fields) || (err == nil) != (tt.fields == nil) {
				t.Fatalf("Validate() = %v; fields %v, want %v", err, got, tt.fields)
			}
			if err == nil {
				return
			}
			var e *Error
			errors.As(err, &e)
			if e.Code != EINVALID || !strings.Contains(e.Fields[0].Message, tt.msg) {
				t.Errorf("Validate() = %s %q, want EINVALID with %q first", e.Code, e.Fields[0].Message, tt.msg)
			}
		})
	}
}

// TestTaskSpecDeviceProblemsAreBounded checks that a long list of bad keys
// gives a short answer that still counts them.
func TestTaskSpecDeviceProblemsAreBounded(t *testing.T) {
	s := TaskSpec{FirmwareID: 1, Mode: ModePush, Target: Target{Devices: slices.Repeat([]string{"bad key"}, 1000)}}
	var e *Error
	if !errors.As(s.Validate(t0), &e) || len(e.Fields) != maxKeyProblems+1 {
		t.Fatalf("%d field errors, want %d", len(e.Fields), maxKeyProblems+1)
	}
	if last := e.Fields[maxKeyProblems].Message; last != "and 990 more problems of the target's devices" {
		t.Errorf("last field error %q", last)
	}
}

// taskFields are the paths TaskSpec.Validate may name.
var taskFields = []string{"name", "firmware_id", "mode", "target", "target.percent", "target.devices", "target.tags",
	"target.from_versions", "policy.window", "policy.window.start", "policy.window.end", "policy.window.tz"}

// FuzzTaskSpecValidate decodes API-shaped bodies into a TaskSpec and checks
// that Validate never panics and always answers an EINVALID error whose
// every problem has a known field and a message that the error's message
// carries.
func FuzzTaskSpecValidate(f *testing.F) {
	for _, s := range []string{
		`{"firmware_id": 1, "mode": "push", "target": {"all": true}}`,
		`{"name": "a\u0000", "target": {"devices": ["d1", "d1", ""], "tags": {"": "x"}, "percent": 200}}`,
		`{"firmware_id": 2, "mode": "request", "verification": true, "target": {"from_versions": [" "]},
			"policy": {"end": "2020-01-01T00:00:00Z", "window": {"start": "9", "end": "9", "tz": "Local"}, "rate": -3, "phases": [50]}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var s TaskSpec
		if json.Unmarshal([]byte(body), &struct {
			Name         *string `json:"name"`
			FirmwareID   *int64  `json:"firmware_id"`
			Mode         *Mode   `json:"mode"`
			Verification *bool   `json:"verification"`
			Target       *Target `json:"target"`
			Policy       *Policy `json:"policy"`
		}{&s.Name, &s.FirmwareID, &s.Mode, &s.Verification, &s.Target, &s.Policy}) != nil {
			return
		}
		err := s.Validate(t0)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != EINVALID || len(e.Fields) == 0 {
			t.Fatalf("%s: %#v is not EINVALID with fields", body, err)
		}
		for _, fe := range e.Fields {
			if !slices.Contains(taskFields, fe.Field) && !strings.HasPrefix(fe.Field, "policy.") || fe.Message == "" {
				t.Fatalf("%s: field error %+v", body, fe)
			}
			if !strings.Contains(e.Message, fe.Message) {
				t.Fatalf("%s: message %q lacks %q", body, e.Message, fe.Message)
			}
		}
	})
}
