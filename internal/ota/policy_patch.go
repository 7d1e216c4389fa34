package ota

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// EditablePolicyFields are the policy fields an operator may change on a
// task that has not ended. Phases and confirm stay fixed: jobs were
// assigned to phases and devices told whether to confirm when the task
// was created.
var EditablePolicyFields = []string{
	"start", "end", "window", "rate", "rate_growth", "rate_growth_every", "max_concurrent",
	"phase_success", "phase_gate", "retries", "retry_backoff", "retry_on", "timeout",
	"abort_failure", "abort_min",
}

// PolicyChange is one field a policy edit changed, as JSON text ("-" for
// unset).
type PolicyChange struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// Patch returns p with a JSON merge patch (RFC 7396) applied: each key of
// patch replaces that field, null unsets it, absent keys stay. Only
// EditablePolicyFields may appear. The result is validated as a new
// task's policy is, and a changed end must come after now (an end kept as
// it was may have passed). Every problem is reported, at its field.
func (p Policy) Patch(patch map[string]json.RawMessage, now time.Time) (Policy, error) {
	if err := checkPatchKeys(patch); err != nil {
		return p, err
	}
	merged, err := policyFields(p)
	if err != nil {
		return p, err
	}
	for k, v := range patch {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			delete(merged, k)
			continue
		}
		merged[k] = v
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return p, err
	}
	var next Policy
	if err := json.Unmarshal(b, &next); err != nil {
		return p, Invalid(decodeProblems(patch, err)...)
	}
	problems := next.problems()
	if next.End != nil && (p.End == nil || !next.End.Equal(*p.End)) {
		problems = append(problems, endProblem(next.End, now)...)
	}
	if err := invalid(problems); err != nil {
		return p, err
	}
	return next, nil
}

func checkPatchKeys(patch map[string]json.RawMessage) error {
	var bad []string
	for k := range patch {
		if !slices.Contains(EditablePolicyFields, k) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	e := Errorf(EINVALID, "policy %s cannot be changed on a task (editable: %s)",
		strings.Join(bad, ", "), strings.Join(EditablePolicyFields, ", "))
	for _, k := range bad {
		e.Fields = append(e.Fields, policyProblem(k, "%s cannot be changed on a task", k))
	}
	return e
}

// decodeProblems decodes the patch's fields one by one to name each that
// cannot be read; err, the whole decode's error, stands in if none fails
// alone.
func decodeProblems(patch map[string]json.RawMessage, err error) []FieldError {
	var out []FieldError
	for _, k := range slices.Sorted(maps.Keys(patch)) {
		var one Policy
		if e := json.Unmarshal([]byte(`{"`+k+`":`+string(patch[k])+`}`), &one); e != nil {
			msg := jsonProblem(e)
			if !strings.HasPrefix(msg, k+" ") {
				msg = k + ": " + msg
			}
			out = append(out, policyProblem(k, "%s", msg))
		}
	}
	if len(out) == 0 {
		out = append(out, FieldError{"policy", jsonProblem(err)})
	}
	return out
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var e *Error
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("%s must be a %s", te.Field, te.Type)
	case errors.As(err, &e):
		return e.Message
	}
	return err.Error()
}

// policyFields is p as JSON fields, so that a patch and a diff work field
// by field with the names the API uses.
func policyFields(p Policy) (map[string]json.RawMessage, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	return m, json.Unmarshal(b, &m)
}

// PolicyDiff lists the fields that differ between old and next, in field
// name order.
func PolicyDiff(old, next Policy) []PolicyChange {
	a, errA := policyFields(old)
	b, errB := policyFields(next)
	if errA != nil || errB != nil {
		return nil
	}
	var out []PolicyChange
	for _, k := range unionKeys(a, b) {
		if !bytes.Equal(a[k], b[k]) {
			out = append(out, PolicyChange{Field: k, Old: fieldText(a[k]), New: fieldText(b[k])})
		}
	}
	return out
}

func unionKeys(a, b map[string]json.RawMessage) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// fieldText shows a JSON value plainly: strings without quotes, "-" for
// unset.
func fieldText(v json.RawMessage) string {
	if len(v) == 0 {
		return "-"
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// DiffText is a policy diff for people: "rate 10 -> 100, end - -> 2026-...".
func DiffText(changes []PolicyChange) string {
	parts := make([]string, len(changes))
	for i, c := range changes {
		parts[i] = fmt.Sprintf("%s %s -> %s", c.Field, c.Old, c.New)
	}
	return strings.Join(parts, ", ")
}
