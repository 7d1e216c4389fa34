package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
)

// watchEvery is how often `task watch` redraws.
const watchEvery = time.Second

// previewPageSize is how many devices of a dry run are fetched: the first
// page in rollout order (the server's largest page).
const previewPageSize = 1000

func (a *app) taskCommand() *cobra.Command {
	return a.group("task", "Run and watch batch upgrade tasks",
		a.taskCreateCommand(),
		a.taskListCommand(),
		a.taskShowCommand(),
		a.taskJobsCommand(),
		a.taskWatchCommand(),
		a.taskActionCommand("pause", "Pause a task: no new job starts; jobs in flight go on", (*client.Client).PauseTask),
		a.taskActionCommand("resume", "Resume a paused task", (*client.Client).ResumeTask),
		a.taskActionCommand("cancel", "Cancel a task: queued jobs are cancelled, unstarted devices are told", (*client.Client).CancelTask),
		a.taskActionCommand("advance", "Open the next phase of a task with a manual phase gate", (*client.Client).AdvanceTask),
		a.taskRetryCommand(),
		a.taskUpdateCommand(),
		a.taskCancelDevicesCommand(),
	)
}

func (a *app) taskCreateCommand() *cobra.Command {
	f := &taskFlags{}
	cmd := &cobra.Command{
		Use:   "create --firmware ID (--devices D1,D2 | --devices-file F | --all | --tags K=V,...) [policy flags]",
		Short: "Create a batch upgrade task, or preview it with --dry-run",
		Long: `Create a batch upgrade task: one firmware, the devices it targets, and a policy.

Devices: --devices, --devices-file (one key per line; a device import CSV
works), --all, --tags, --from-versions; they narrow one another. --percent
keeps a stable sample, --dynamic also takes devices that come to match later
(by a version report, a tag change or being created), --skip-busy leaves out
devices another task is upgrading (otherwise the task is refused and they
are named). Devices that have never reported a version are targeted too:
their jobs wait (awaiting_version) for the report, then proceed, or end
cancelled with code version_not_eligible if the firmware does not upgrade
from the version reported.

--start and --end take an RFC 3339 time, "now", or a delay from now such as
+10m, +2h or +1d. Percentages may be written 5 or 5%. Durations are Go
durations: 30s, 10m, 1h30m.

A firmware added with --verify-required needs a verification task first: a
task with --verify on a short --devices list whose jobs all succeed.

--dry-run creates nothing: it shows how many devices the task would target,
how many of them have not reported a version yet, per phase, which are busy,
and the first devices in rollout order (-o json: the first 1000 and a
cursor).`,
		Example: `  otter task create --firmware 3 --verify --devices d1,d2
  otter task create --firmware 3 --all --dry-run
  otter task create --firmware 3 --tags site=paris --phases 1%,10%,100% --phase-success 95% \
      --rate 100 --max-concurrent 500 --retries 3 --retry-backoff 1m --timeout 30m \
      --abort-failure 10% --abort-min 20 --window 01:00-05:00 --tz Europe/Paris --end +7d`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := f.spec(a.now(), a.openKeys)
			if err != nil {
				return err
			}
			if f.dryRun {
				return a.previewTask(cmd.Context(), spec)
			}
			t, err := a.client().CreateTask(cmd.Context(), spec)
			if err != nil {
				return err
			}
			return a.render(t, func(w io.Writer) error { return writeTask(w, t) })
		},
	}
	addTaskFlags(cmd, f)
	return cmd
}

func addTaskFlags(cmd *cobra.Command, f *taskFlags) {
	fl := cmd.Flags()
	fl.Int64Var(&f.firmware, "firmware", 0, "firmware `ID` to install (required)")
	fl.StringVar(&f.name, "name", "", "a name for people")
	fl.StringVar(&f.mode, "mode", "push", "push (the server sends the upgrade) or request (devices ask)")
	fl.BoolVar(&f.verify, "verify", false, "a verification task: proves a verify-required firmware on a --devices list")
	fl.BoolVar(&f.dryRun, "dry-run", false, "create nothing: show what the task would target")
	fl.StringSliceVar(&f.devices, "devices", nil, "device keys `D1,D2`")
	fl.StringVar(&f.devicesFile, "devices-file", "", "file `F` with one device key per line (- reads standard input)")
	fl.BoolVar(&f.all, "all", false, "every device of the product the firmware may upgrade")
	fl.StringSliceVar(&f.tags, "tags", nil, "only devices with tags `K=V,...`")
	fl.StringSliceVar(&f.fromVersions, "from-versions", nil, "only devices running versions `V1,V2`")
	fl.StringVar(&f.percent, "percent", "", "a stable sample of `P%` of the matching devices")
	fl.BoolVar(&f.dynamic, "dynamic", false, "also take devices that come to match while the task runs")
	fl.BoolVar(&f.skipBusy, "skip-busy", false, "leave out devices another task is upgrading instead of refusing")
	addPolicyFlags(cmd, f)
}

func addPolicyFlags(cmd *cobra.Command, f *taskFlags) {
	fl := cmd.Flags()
	fl.StringVar(&f.start, "start", "", "start at `TIME` (RFC 3339, now, or +10m)")
	fl.StringVar(&f.end, "end", "", "stop starting jobs at `TIME` (RFC 3339 or +2h)")
	fl.StringVar(&f.window, "window", "", "start jobs only in the daily window `HH:MM-HH:MM`")
	fl.StringVar(&f.tz, "tz", "", "time `ZONE` of --window, e.g. Europe/Paris (default UTC)")
	fl.IntVar(&f.rate, "rate", 0, "start at most `N` jobs per minute (0: unlimited)")
	fl.Float64Var(&f.rateGrowth, "rate-growth", 0, "multiply the rate by `F` every --rate-growth-every successes")
	fl.IntVar(&f.rateGrowthEvery, "rate-growth-every", 0, "grow the rate every `N` successes")
	fl.IntVar(&f.maxConcurrent, "max-concurrent", 0, "at most `N` jobs in flight (0: unlimited)")
	fl.StringVar(&f.phases, "phases", "", "cumulative phases `P1%,P2%,100%`, e.g. 1%,10%,100%")
	fl.StringVar(&f.phaseSuccess, "phase-success", "", "success `P%` a phase needs before the next one opens")
	fl.StringVar(&f.phaseGate, "phase-gate", "", "auto (default) or manual (otter task advance)")
	fl.IntVar(&f.retries, "retries", 0, "retry a failed job up to `N` times")
	fl.StringVar(&f.retryBackoff, "retry-backoff", "", "wait `D` before a retry, doubling each time")
	fl.StringSliceVar(&f.retryOn, "retry-on", nil, "retry only these failure `codes` (default: all)")
	fl.StringVar(&f.timeout, "timeout", "", "a job in flight longer than `D` times out")
	fl.StringVar(&f.abortFailure, "abort-failure", "", "abort the task when `P%` of finished jobs failed")
	fl.IntVar(&f.abortMin, "abort-min", 0, "apply --abort-failure only after `N` jobs finished")
	fl.StringVar(&f.confirm, "confirm", "", "where devices ask for a local confirmation: `none` (default; request offers still ask before the download), download (before downloading), install (after the download, before activating) or both")
}

// openKeys opens a --devices-file; "-" is standard input.
func (a *app) openKeys(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(a.env.Stdin), nil
	}
	return os.Open(name)
}

func (a *app) previewTask(ctx context.Context, spec client.TaskCreate) error {
	p, err := a.client().PreviewTask(ctx, spec, client.ListOptions{Limit: previewPageSize})
	if err != nil {
		return err
	}
	return a.render(p, func(w io.Writer) error { return writePreview(w, p, spec.Policy.Phases) })
}

func (a *app) taskListCommand() *cobra.Command {
	var (
		f      client.TaskFilter
		states []string
		limit  int
	)
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List tasks, newest first",
		Example: "  otter task list\n  otter task list --product demo --state running --state paused -o json",
		Args:    needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkLimit(limit); err != nil {
				return err
			}
			var err error
			if f.States, err = parseTaskStates(states); err != nil {
				return err
			}
			items, err := collect(a.client().AllTasks(cmd.Context(), f, pageOptions(limit)), limit)
			if err != nil {
				return err
			}
			return a.render(items, func(w io.Writer) error { return writeTaskList(w, items, a.now()) })
		},
	}
	cmd.Flags().StringVar(&f.Product, "product", "", "only tasks of product `P`")
	cmd.Flags().Int64Var(&f.FirmwareID, "firmware", 0, "only tasks of firmware `ID`")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only tasks in state `S` (repeatable): scheduled, running, paused, completed, cancelled, aborted")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most `N` tasks (default: all)")
	return cmd
}

func parseTaskStates(names []string) ([]client.TaskState, error) {
	valid := []client.TaskState{client.TaskScheduled, client.TaskRunning, client.TaskPaused,
		client.TaskCompleted, client.TaskCancelled, client.TaskAborted}
	return parseStates("--state", names, valid)
}

// parseStates checks state names locally, so that a typo is a usage error.
func parseStates[S ~string](flag string, names []string, valid []S) ([]S, error) {
	out := make([]S, 0, len(names))
	for _, n := range names {
		if !slices.Contains(valid, S(n)) {
			all := make([]string, len(valid))
			for i, v := range valid {
				all[i] = string(v)
			}
			return nil, usageErrorf("%s %q: want one of %s", flag, n, strings.Join(all, ", "))
		}
		out = append(out, S(n))
	}
	return out, nil
}

func (a *app) taskShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show a task: state, phase, target, policy, job counts and progress",
		Example: "  otter task show 7\n  otter task show 7 -o json",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			t, err := a.client().Task(cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.render(t, func(w io.Writer) error { return writeTask(w, t) })
		},
	}
}

func (a *app) taskJobsCommand() *cobra.Command {
	var (
		states []string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "jobs ID",
		Short: "List a task's jobs, in job id order",
		Long: `List a task's jobs in job id order, following the pages (a task may have a
million jobs: the output is streamed). -o json prints one JSON array; -o csv
prints the server's CSV export (columns job_id, device, state, phase, attempt,
percent, code, message, from_version, to_version, created_at, started_at,
updated_at; --limit does not apply).`,
		Example:     "  otter task jobs 7 --state failed --state timed_out\n  otter task jobs 7 -o json\n  otter task jobs 7 -o csv > jobs.csv",
		Args:        needArgs("ID"),
		Annotations: map[string]string{annotCSV: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			if err := checkLimit(limit); err != nil {
				return err
			}
			st, err := parseStates("--state", states, client.JobStates)
			if err != nil {
				return err
			}
			if a.output == "csv" {
				return a.client().ExportTaskJobs(cmd.Context(), id, st, a.env.Stdout)
			}
			return a.streamJobs(a.client().AllTaskJobs(cmd.Context(), id, st, pageOptions(limit)), limit)
		},
	}
	cmd.Flags().StringSliceVar(&states, "state", nil, "only jobs in state `S` (repeatable), e.g. failed")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most `N` jobs (default: all)")
	return cmd
}

// streamJobs prints jobs as they arrive, page by page, so that a million
// jobs never sit in memory: a JSON array, or a table flushed every page.
func (a *app) streamJobs(seq func(func(client.Job, error) bool), limit int) error {
	out := newJobStream(a.env.Stdout, a.output == "json", a.now())
	n := 0
	for j, err := range seq {
		if err != nil {
			return err
		}
		if err := out.add(&j); err != nil {
			return err
		}
		if n++; limit > 0 && n >= limit {
			break
		}
	}
	return out.close()
}

func (a *app) taskWatchCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a task until it ends",
		Long: `Show a task every second until it ends or Ctrl-C. On a terminal the screen is
redrawn; otherwise one line is printed each time the task changes (with
-o json: one JSON object per line).`,
		Example: "  otter task watch 7",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			return a.watchTask(cmd.Context(), id)
		},
	}
}

// watchTask polls the task until it ends. Ctrl-C (the context ending) is
// the normal way to stop watching, not an error.
func (a *app) watchTask(ctx context.Context, id int64) error {
	c := a.client()
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	var last string
	for {
		t, err := c.Task(ctx, id)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil
			}
			return err
		}
		if last, err = a.drawWatch(t, last); err != nil {
			return err
		}
		if t.State.Terminal() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// drawWatch shows one frame of `task watch` and returns what it showed; a
// plain line is printed only when it differs from the last one.
func (a *app) drawWatch(t *client.Task, last string) (string, error) {
	w := a.env.Stdout
	switch {
	case a.output == "json":
		var b strings.Builder
		if err := writeJSONLine(&b, t); err != nil {
			return last, err
		}
		return printIfNew(w, b.String(), last)
	case isTerminal(w):
		fmt.Fprint(w, "\x1b[H\x1b[2J") // home and clear: redraw in place
		return "", writeTask(w, t)
	}
	line := watchLine(t)
	if line == last {
		return last, nil // only the time would differ
	}
	_, err := fmt.Fprintf(w, "%s %s\n", formatTime(a.now()), line)
	return line, err
}

func printIfNew(w io.Writer, s, last string) (string, error) {
	if s == last {
		return last, nil
	}
	_, err := io.WriteString(w, s)
	return s, err
}

func (a *app) taskActionCommand(name, short string, do func(*client.Client, context.Context, int64) (*client.Task, error)) *cobra.Command {
	return &cobra.Command{
		Use:     name + " ID",
		Short:   short,
		Example: "  otter task " + name + " 7",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			t, err := do(a.client(), cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.render(t, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "task %d is %s%s\n", t.ID, t.State, phaseNote(t))
				return err
			})
		},
	}
}

func phaseNote(t *client.Task) string {
	if len(t.Policy.Phases) == 0 {
		return ""
	}
	return ", phase " + phaseLine(t)
}

func (a *app) taskRetryCommand() *cobra.Command {
	var devices []string
	cmd := &cobra.Command{
		Use:   "retry-failed ID",
		Short: "Put a task's failed and timed-out jobs back in the queue",
		Long: `Put a task's failed and timed-out jobs back in the queue (attempts count on)
and run the task again if it had completed; with --devices, only the jobs of
those devices (each must have a job in the task). A job whose device already
runs the target version is recorded as succeeded instead: it is never sent
the upgrade again.`,
		Example: "  otter task retry-failed 7\n  otter task retry-failed 7 --devices sn-001,sn-002",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			var r *client.RetriedTask
			if cmd.Flags().Changed("devices") {
				r, err = a.client().RetryFailedDevices(cmd.Context(), id, devices)
			} else {
				r, err = a.client().RetryFailed(cmd.Context(), id)
			}
			if err != nil {
				return err
			}
			return a.render(r, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "requeued %s of task %d (%s)\n", ota.Plural(r.Requeued, "job", "jobs"), r.ID, r.State)
				return err
			})
		},
	}
	cmd.Flags().StringSliceVar(&devices, "devices", nil, "only the jobs of devices `D1,D2` (at most 1000)")
	return cmd
}

func (a *app) taskCancelDevicesCommand() *cobra.Command {
	var devices []string
	cmd := &cobra.Command{
		Use:   "cancel-devices ID --devices D1,D2",
		Short: "Cancel the jobs of some devices of a task",
		Long: `Cancel the jobs of the given devices in a task (each must have a job in it);
the task goes on with its other devices. Jobs that have not started installing
are cancelled, and a device already told to upgrade is told it is withdrawn;
jobs installing, rebooting or ended are left as they are.`,
		Example: "  otter task cancel-devices 7 --devices sn-001,sn-002",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task", args[0])
			if err != nil {
				return err
			}
			if len(devices) == 0 {
				return usageErrorf("name the devices with --devices D1,D2")
			}
			r, err := a.client().CancelDevices(cmd.Context(), id, devices)
			if err != nil {
				return err
			}
			return a.render(r, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "cancelled %s of task %d (%s)\n", ota.Plural(r.Cancelled, "job", "jobs"), r.ID, r.State)
				return err
			})
		},
	}
	cmd.Flags().StringSliceVar(&devices, "devices", nil, "device keys `D1,D2` (at most 1000)")
	return cmd
}
