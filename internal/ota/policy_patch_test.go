package ota

import (
	"encoding/json"
	"slices"
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
		{`{"end": "2025-01-01T00:00:00Z"}`, nil, "", "end 2025-01-01T00:00:00Z is in the past"},
	} {
		var patch map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tc.patch), &patch); err != nil {
			t.Fatal(err)
		}
		got, err := base.Patch(patch, t0)
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

// TestPolicyPatchFields checks that each problem of a patch names its field,
// and that an end kept as it was may have passed.
func TestPolicyPatchFields(t *testing.T) {
	past := t0.Add(-time.Hour)
	base := Policy{End: &past}
	for _, tc := range []struct {
		patch  string
		fields []string
	}{
		{`{"rate": "fast", "timeout": "soon", "max_concurrent": 3}`, []string{"policy.rate", "policy.timeout"}},
		{`{"rate": -1, "abort_min": 2}`, []string{"policy.rate", "policy.abort_min"}},
		{`{"phases": [100], "confirm": "both"}`, []string{"policy.confirm", "policy.phases"}},
		{`{"end": "2025-02-01T00:00:00Z"}`, []string{"policy.end"}},
		{`{"window": {"start": "1", "end": "05:00", "tz": "Nowhere"}}`, []string{"policy.window.start", "policy.window.tz"}},
		{`{"rate": 5}`, nil},
		{`{"end": "` + past.Format(time.RFC3339) + `"}`, nil},
	} {
		var patch map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tc.patch), &patch); err != nil {
			t.Fatal(err)
		}
		_, err := base.Patch(patch, t0)
		if got := fieldsOf(err); !slices.Equal(got, tc.fields) {
			t.Errorf("%s: fields %v (%v), want %v", tc.patch, got, err, tc.fields)
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
		got, err := Policy{Rate: 5}.Patch(patch, t0)
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
