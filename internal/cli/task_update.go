package cli

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/client"
)

// unset is the value that clears --start, --end or --window on a task.
const unset = "none"

func (a *app) taskUpdateCommand() *cobra.Command {
	f := &taskFlags{}
	cmd := &cobra.Command{
		Use:   "update ID [policy flags]",
		Short: "Change the policy of a scheduled, running or paused task",
		Long: `Change the policy of a task that has not ended: only the flags given
change, and the engine applies them at once (a lower --max-concurrent stops
new starts until the jobs in flight are under it; a new --timeout applies
to jobs started afterwards). The whole policy is checked as at creation.
--start, --end and --window take "none" to remove them. The target, the
firmware, the mode and the phases are fixed: create a new task instead.
Each change is an event naming who changed what (otter events --task ID).`,
		Example: `  otter task update 7 --rate 100 --max-concurrent 20
  otter task update 7 --end +2d --window none
  otter task update 7 --phase-gate manual --abort-failure 5%`,
		Args: needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			patch, err := f.patch(cmd.Flags().Changed, a.now())
			if err != nil {
				return err
			}
			t, err := a.client().UpdateTask(cmd.Context(), id, patch)
			if err != nil {
				return err
			}
			return a.render(t, func(w io.Writer) error { return writeTask(w, t) })
		},
	}
	addPolicyFlags(cmd, f)
	for _, fixed := range []string{"phases", "confirm"} {
		_ = cmd.Flags().MarkHidden(fixed)
	}
	return cmd
}

// patch turns the policy flags given into a JSON merge patch of the
// task's policy, each value parsed as `task create` parses it.
func (f *taskFlags) patch(changed func(string) bool, now time.Time) (map[string]any, error) {
	for _, fixed := range []string{"phases", "confirm"} {
		if changed(fixed) {
			return nil, usageErrorf("--%s cannot be changed on a task: create a new task instead", fixed)
		}
	}
	out := map[string]any{}
	f.takeUnset(changed, out)
	p := client.Policy{
		Rate: f.rate, RateGrowth: f.rateGrowth, RateGrowthEvery: f.rateGrowthEvery, MaxConcurrent: f.maxConcurrent,
		PhaseGate: f.phaseGate, Retries: f.retries, AbortMin: f.abortMin,
	}
	for _, parse := range []func(*client.Policy, time.Time) error{f.schedule, f.percents, f.durations} {
		if err := parse(&p, now); err != nil {
			return nil, err
		}
	}
	for flag, v := range f.patchValues(p) {
		if changed(flag.name) {
			out[flag.field] = v
		}
	}
	if len(out) == 0 {
		return nil, usageErrorf("nothing to change: give a policy flag, e.g. --rate 100 (otter task update --help)")
	}
	return out, nil
}

// takeUnset moves the "none" values into the patch as nulls and clears
// them from the flags, which then parse as not given.
func (f *taskFlags) takeUnset(changed func(string) bool, out map[string]any) {
	for _, v := range []struct {
		name, field string
		val         *string
	}{{"start", "start", &f.start}, {"end", "end", &f.end}, {"window", "window", &f.window}} {
		if changed(v.name) && *v.val == unset {
			out[v.field] = nil
			*v.val = ""
		}
	}
}

type patchFlag struct{ name, field string }

func (f *taskFlags) patchValues(p client.Policy) map[patchFlag]any {
	m := map[patchFlag]any{
		{"rate", "rate"}: p.Rate, {"rate-growth", "rate_growth"}: p.RateGrowth,
		{"rate-growth-every", "rate_growth_every"}: p.RateGrowthEvery, {"max-concurrent", "max_concurrent"}: p.MaxConcurrent,
		{"phase-success", "phase_success"}: p.PhaseSuccess, {"phase-gate", "phase_gate"}: p.PhaseGate,
		{"retries", "retries"}: p.Retries, {"retry-backoff", "retry_backoff"}: p.RetryBackoff,
		{"retry-on", "retry_on"}: f.retryOn, {"timeout", "timeout"}: p.Timeout,
		{"abort-failure", "abort_failure"}: p.AbortFailure, {"abort-min", "abort_min"}: p.AbortMin,
	}
	if p.Start != nil {
		m[patchFlag{"start", "start"}] = p.Start
	}
	if p.End != nil {
		m[patchFlag{"end", "end"}] = p.End
	}
	if p.Window != nil {
		m[patchFlag{"window", "window"}] = p.Window
		m[patchFlag{"tz", "window"}] = p.Window
	}
	return m
}
