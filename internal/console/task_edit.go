package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// formTime is how the edit form shows a start or end time.
const formTime = "2006-01-02T15:04:05"

// policyForm is the edit form's values for a task's policy.
func policyForm(p ota.Policy) url.Values {
	v := url.Values{"tz": {"UTC"}, "phase_gate": {p.PhaseGate}}
	loc := time.UTC
	if p.Window != nil {
		v.Set("window", p.Window.Start+"-"+p.Window.End)
		if l, err := p.Window.Location(); err == nil && p.Window.TZ != "" {
			v.Set("tz", p.Window.TZ)
			loc = l
		}
	}
	for name, t := range map[string]*time.Time{"start": p.Start, "end": p.End} {
		if t != nil {
			v.Set(name, t.In(loc).Format(formTime))
		}
	}
	for name, n := range map[string]float64{
		"rate": float64(p.Rate), "rate_growth": p.RateGrowth, "rate_growth_every": float64(p.RateGrowthEvery),
		"max_concurrent": float64(p.MaxConcurrent), "phase_success": p.PhaseSuccess, "retries": float64(p.Retries),
		"abort_failure": p.AbortFailure, "abort_min": float64(p.AbortMin),
	} {
		if n != 0 {
			v.Set(name, fmt.Sprint(n))
		}
	}
	for name, d := range map[string]ota.Duration{"retry_backoff": p.RetryBackoff, "timeout": p.Timeout} {
		if d != 0 {
			v.Set(name, time.Duration(d).String())
		}
	}
	v.Set("retry_on", strings.Join(p.RetryOn, ", "))
	return v
}

// parsePolicyForm reads the edit form into a whole policy; phases and
// confirm stay the task's, and a time shown unchanged keeps its precision.
func parsePolicyForm(f *form, old ota.Policy) ota.Policy {
	p := &taskParser{f: f}
	p.schedule()
	p.limits()
	p.retries()
	pol := &p.spec.Policy
	pol.Phases, pol.Confirm = old.Phases, old.Confirm
	pol.PhaseSuccess = p.percent("phase_success")
	pol.PhaseGate = f.Get("phase_gate")
	pol.AbortFailure = p.percent("abort_failure")
	pol.AbortMin = p.int("abort_min")
	shown := policyForm(old)
	if f.Get("start") == shown.Get("start") && f.Get("tz") == shown.Get("tz") {
		pol.Start = old.Start
	}
	if f.Get("end") == shown.Get("end") && f.Get("tz") == shown.Get("tz") {
		pol.End = old.End
	}
	return *pol
}

// policyPatch is the merge patch that turns old into next: every editable
// field, null where next has none.
func policyPatch(next ota.Policy) (map[string]any, error) {
	b, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	patch := map[string]any{}
	for _, k := range ota.EditablePolicyFields {
		if v, ok := fields[k]; ok {
			patch[k] = v
		} else {
			patch[k] = nil
		}
	}
	return patch, nil
}

// updatePolicy handles the task page's edit form.
func (c *Console) updatePolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := pathID(r, "id", "task")
	if err != nil {
		return err
	}
	t, err := c.store.GetTask(r.Context(), id)
	if err != nil {
		return err
	}
	f := newForm(r.PostForm)
	next := parsePolicyForm(f, t.Policy)
	if !f.OK() {
		return c.showTask(w, r, s, http.StatusBadRequest, "", "The policy was not changed: "+formProblems(f))
	}
	patch, err := policyPatch(next)
	if err == nil {
		_, err = c.client(s).UpdateTask(r.Context(), id, patch)
	}
	if refused(err) {
		return err
	}
	if err != nil {
		return c.showTask(w, r, s, statusOf(err), "", "The policy was not changed: "+messageOf(err))
	}
	changes := ota.PolicyDiff(t.Policy, next)
	if len(changes) == 0 {
		return c.showTask(w, r, s, http.StatusOK, "Nothing changed.", "")
	}
	return c.showTask(w, r, s, http.StatusOK, "Policy changed: "+ota.DiffText(changes)+".", "")
}

// formProblems joins a form's field errors.
func formProblems(f *form) string {
	var out []string
	for name, msg := range f.Errors {
		out = append(out, name+": "+msg)
	}
	return strings.Join(out, "; ")
}

// editField is one input of the policy edit form.
type editField struct{ Name, Label, Hint string }

var editFields = []editField{
	{"start", "Start", "2026-12-01T02:00:00, empty: at once"}, {"end", "End", "empty: none"},
	{"window", "Daily window", "01:00-05:00, empty: any time"}, {"tz", "Time zone", "UTC"},
	{"rate", "Starts a minute", "empty: no limit"}, {"rate_growth", "Rate growth ×", ""},
	{"rate_growth_every", "Grow every N successes", ""}, {"max_concurrent", "Max in flight", "empty: no limit"},
	{"phase_success", "Phase success %", ""}, {"phase_gate", "Phase gate", "auto or manual"},
	{"retries", "Retries", ""}, {"retry_backoff", "Retry backoff", "1m"}, {"retry_on", "Retry on codes", "empty: all"},
	{"timeout", "Job timeout", "1h"}, {"abort_failure", "Abort at failed %", ""}, {"abort_min", "after N ended jobs", ""},
}
