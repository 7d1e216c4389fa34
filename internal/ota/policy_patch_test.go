package ota

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPolicyPatch(t *testing.T) {
	end := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	base := Policy{Rate: 10, MaxConcurrent: 5, End: &end, Window: &Window{Start: "01:00", End: "05:00", TZ: "UTC"}, Phases: []float64{10, 100}}
	for _, tc := range []struct {
		patch   string
		check   func(Policy) bool
		changes string
		err     string
	}{
		{`{"rate": 100}`, func(p Policy) bool { return p.Rate == 100 && p.MaxConcurrent == 5 }, "rate 10 -> 100", ""},
		{`{"end": null, "window": null}`, func(p Policy) bool { return p.End == nil && p.Window == nil && p.Rate == 10 },
			`end 2030-01-01T00:00:00Z -> -, window {"start":"01:00","end":"05:00","tz":"UTC"} -> -`, ""},
		{`{"max_concurrent": 0, "timeout": "5m"}`, func(p Policy) bool { return p.MaxConcurrent == 0 && p.Timeout == Duration(5*time.Minute) },
			"max_concurrent 5 -> -, timeout - -> 5m0s", ""},
		{`{"phase_gate": "manual"}`, func(p Policy) bool { return p.PhaseGate == GateManual }, "phase_gate - -> manual", ""},
		{`{"rate": -1}`, nil, "", "rate -1 must be between"},
		{`{"rate": "fast"}`, nil, "", "rate must be a int"},
		{`{"timeout": "soon"}`, nil, "", "invalid duration"},
		{`{"phases": [100], "confirm": true}`, nil, "", "policy confirm, phases cannot be changed"},
		{`{"window": {"start": "25:00", "end": "05:00"}}`, nil, "", "window"},
	} {
		var patch map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tc.patch), &patch); err != nil {
			t.Fatal(err)
		}
		got, err := base.Patch(patch)
		if tc.err != "" {
			if err == nil || !strings.Contains(ErrorMessage(err), tc.err) || ErrorCode(err) != EINVALID {
				t.Errorf("%s: error %v, want EINVALID with %q", tc.patch, err, tc.err)
			}
			continue
		}
		if err != nil || !tc.check(got) {
			t.Errorf("%s: %+v, %v", tc.patch, got, err)
			continue
		}
		if d := DiffText(PolicyDiff(base, got)); d != tc.changes {
			t.Errorf("%s: diff %q, want %q", tc.patch, d, tc.changes)
		}
	}
}

func FuzzPolicyPatch(f *testing.F) {
	f.Add(`{"rate": 100, "end": null}`)
	f.Add(`{"window": {"start": "01:00", "end": "02:00", "tz": "Europe/Paris"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		var patch map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &patch) != nil {
			return
		}
		got, err := Policy{Rate: 5}.Patch(patch)
		if err != nil {
			if ErrorCode(err) != EINVALID {
				t.Fatalf("%s: %v is not EINVALID", s, err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("%s: patched policy is invalid: %v", s, err)
		}
	})
}
