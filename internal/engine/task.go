package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// Preview is what a task would target: the answer of a dry run.
type Preview struct {
	Total   int      `json:"total"`
	Devices []string `json:"devices"` // in rollout order
	// Busy lists devices left out because another task is upgrading the
	// same module on them (with SkipBusy).
	Busy []string `json:"busy,omitempty"`
	// PerPhase counts the devices of each phase.
	PerPhase []int `json:"per_phase,omitempty"`
	// Unreported counts the targeted devices that have never reported a
	// version of the module: their jobs wait for the report.
	Unreported int `json:"unreported"`
}

// withSeed seeds the rollout order by firmware unless the spec has a seed:
// a 10% task then includes the devices of an earlier 5% task of the same
// firmware.
func withSeed(s ota.TaskSpec) ota.TaskSpec {
	if s.Target.Seed == "" {
		s.Target.Seed = "fw" + strconv.FormatInt(s.FirmwareID, 10)
	}
	return s
}

// maxListed bounds device lists inside error messages.
const maxListed = 50

// Plan resolves a spec into the jobs it would create, without creating
// anything: the dry run, and the first half of CreateTask.
func (e *Engine) Plan(ctx context.Context, spec ota.TaskSpec) (Preview, error) {
	_, jobs, busy, err := e.resolve(ctx, withSeed(spec))
	if err != nil {
		return Preview{}, err
	}
	return preview(jobs, busy, len(spec.Policy.Phases)), nil
}

func preview(jobs []ota.Job, busy []string, phases int) Preview {
	p := Preview{Total: len(jobs), Devices: make([]string, len(jobs)), Busy: busy}
	if phases > 0 {
		p.PerPhase = make([]int, phases)
	}
	for i, j := range jobs {
		p.Devices[i] = j.Device
		if j.State == ota.JobAwaitingVersion {
			p.Unreported++
		}
		if int(j.Phase) < len(p.PerPhase) {
			p.PerPhase[j.Phase]++
		}
	}
	return p
}

// CreateTask validates a spec, fixes its targets as jobs and stores the
// task; the engine starts it when its start time comes. It all runs as one
// operation of the loop, the only writer of jobs: no job can start or end
// between the reading of the busy devices and the storing of the task, and
// the answer comes from the loop's memory, not from reading back.
func (e *Engine) CreateTask(ctx context.Context, spec ota.TaskSpec) (ota.Task, error) {
	actor := ota.ActorFrom(ctx)
	var t ota.Task
	err := e.control(ctx, func(ctx context.Context) error {
		var err error
		t, err = e.createTask(ota.WithActor(ctx, actor), withSeed(spec))
		return err
	})
	return t, err
}

func (e *Engine) createTask(ctx context.Context, spec ota.TaskSpec) (ota.Task, error) {
	fw, jobs, _, err := e.resolve(ctx, spec)
	if err != nil {
		return ota.Task{}, err
	}
	if len(jobs) == 0 && !spec.Target.Dynamic {
		e := ota.Errorf(ota.EINVALID, "no device matches the task's target: nothing to upgrade")
		e.Fields = []ota.FieldError{{Field: "target", Message: e.Message}}
		return ota.Task{}, e
	}
	now := e.now()
	t := ota.Task{
		Name: spec.Name, Product: fw.Product, Module: fw.Module, FirmwareID: fw.ID, Version: fw.Version,
		Verification: spec.Verification, Mode: spec.Mode, State: ota.TaskScheduled,
		Policy: spec.Policy, Target: spec.Target, CreatedBy: ota.ActorFrom(ctx), CreatedAt: now,
		Total: int64(len(jobs)),
	}
	counts := ota.PhaseCounts{}
	for i := range jobs {
		jobs[i].CreatedAt, jobs[i].UpdatedAt = now, now
		counts.Add(int(jobs[i].Phase), jobs[i].State, 1)
	}
	err = e.st.CreateTask(ctx, &t, jobs)
	if err != nil {
		e.forgetJobs() // written or not: an error may come after the commit
		return ota.Task{}, err
	}
	e.addJobs(jobs)
	ts, err := e.cache(ota.ActiveTask{Task: t}, fw, counts)
	if err != nil {
		return t, fmt.Errorf("engine: take task %d: %w", t.ID, err)
	}
	e.poke()
	if err := e.settleReported(ctx, ts); err != nil {
		return t, fmt.Errorf("engine: take task %d: %w", t.ID, err)
	}
	return ts.snapshot(), nil
}

// snapshot is the task as the store would answer it: its job counts per
// state, summed over the phases, the loop keeps exact.
func (ts *taskState) snapshot() ota.Task {
	t := ts.task
	t.Counts = make(map[ota.JobState]int64)
	for _, byState := range ts.counts {
		for state, n := range byState {
			t.Counts[state] += n
		}
	}
	maps.DeleteFunc(t.Counts, func(_ ota.JobState, n int64) bool { return n == 0 })
	return t
}

// resolve checks a spec and turns its target into jobs in rollout order.
func (e *Engine) resolve(ctx context.Context, spec ota.TaskSpec) (ota.Firmware, []ota.Job, []string, error) {
	fw, err := e.checkSpec(ctx, spec)
	if err != nil {
		return fw, nil, nil, err
	}
	cands, err := e.candidates(ctx, fw, spec.Target)
	if err != nil {
		return fw, nil, nil, err
	}
	cands, busy, err := e.dropBusy(ctx, fw, cands, spec.Target.SkipBusy)
	if err != nil {
		return fw, nil, nil, err
	}
	return fw, e.jobsFor(fw, cands, spec), busy, nil
}

// checkSpec applies the domain's rules (ota.TaskSpec.Validate), then those
// that need the firmware.
func (e *Engine) checkSpec(ctx context.Context, spec ota.TaskSpec) (ota.Firmware, error) {
	if err := spec.Validate(e.now()); err != nil {
		return ota.Firmware{}, err
	}
	fw, err := e.st.GetFirmware(ctx, spec.FirmwareID)
	if err != nil {
		return fw, err
	}
	if fw.Status != ota.FirmwareActive {
		return fw, firmwareError(ota.Errorf(ota.ECONFLICT, "firmware %d (%s %s) is %s: no new task may use it", fw.ID, fw.Module, fw.Version, fw.Status))
	}
	if fw.VerifyRequired && fw.VerifiedBy == 0 && !spec.Verification {
		return fw, firmwareError(ota.Errorf(ota.ECONFLICT, "firmware %d (%s %s) must be verified before batch use: run a verification task of it on a few devices first and let it complete with every job succeeded", fw.ID, fw.Module, fw.Version))
	}
	return fw, nil
}

// firmwareError puts e at the spec's firmware_id, so a form shows it there.
func firmwareError(e *ota.Error) *ota.Error {
	e.Fields = []ota.FieldError{{Field: "firmware_id", Message: e.Message}}
	return e
}

// candidates lists the devices the target selects whose module the
// firmware may upgrade, and those that have never reported a version of it
// (their jobs wait for the report).
func (e *Engine) candidates(ctx context.Context, fw ota.Firmware, t ota.Target) ([]ota.Candidate, error) {
	all, err := e.st.TargetCandidates(ctx, ota.TargetQuery{
		Product: fw.Product, Module: fw.Module, Tags: t.Tags, Devices: t.Devices,
	})
	if err != nil {
		return nil, err
	}
	if err := unknownDevices(t.Devices, all); err != nil {
		return nil, err
	}
	// Tags and the device list were applied by the query; the domain rule
	// decides the versions.
	// A fleet runs a handful of versions: each is judged once, not once
	// a device (parsing versions was a sixth of resolving a million).
	upgrades := make(map[string]bool)
	out := all[:0]
	for _, c := range all {
		if c.Version == "" {
			out = append(out, c)
			continue
		}
		ok, seen := upgrades[c.Version]
		if !seen {
			ok = t.UpgradesFrom(c.Version, fw)
			upgrades[c.Version] = ok
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

func unknownDevices(keys []string, found []ota.Candidate) error {
	if len(keys) == 0 {
		return nil
	}
	have := make(map[string]bool, len(found))
	for _, c := range found {
		have[c.Key] = true
	}
	missing := absent(keys, have)
	if len(missing) == 0 {
		return nil
	}
	verb := "do not exist"
	if len(missing) == 1 {
		verb = "does not exist"
	}
	e := ota.Errorf(ota.EINVALID, "%d of the listed devices %s in this product (or lack the tags): %s", len(missing), verb, listed(missing))
	e.Details = missing
	e.Fields = []ota.FieldError{{Field: "target.devices", Message: e.Message}}
	return e
}

// dropBusy finds devices that already have an active job on the module:
// they are refused, or left out with skipBusy.
func (e *Engine) dropBusy(ctx context.Context, fw ota.Firmware, cands []ota.Candidate, skipBusy bool) ([]ota.Candidate, []string, error) {
	ids := make([]int64, len(cands))
	for i, c := range cands {
		ids[i] = c.DeviceID
	}
	active, err := e.st.ActiveJobs(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	e.holdJobs(cands, active)
	busy := make(map[int64]int64)
	for _, j := range active {
		if j.Module == fw.Module {
			busy[j.DeviceID] = j.TaskID
		}
	}
	if len(busy) == 0 {
		return cands, nil, nil
	}
	var keys []string
	holder := make(map[string]int64)
	kept := cands[:0]
	for _, c := range cands {
		if task, ok := busy[c.DeviceID]; ok {
			keys = append(keys, c.Key)
			holder[c.Key] = task
			continue
		}
		kept = append(kept, c)
	}
	if skipBusy {
		return kept, keys, nil
	}
	return nil, nil, busyError(fw.Module, keys, holder)
}

// busyError names each busy device with the task that holds it, so the
// operator knows which task to wait for or cancel.
func busyError(module string, keys []string, holder map[string]int64) error {
	shown := keys[:min(len(keys), maxListed)]
	named := make([]string, len(shown))
	tasks := make(map[int64]bool)
	for i, k := range shown {
		named[i] = fmt.Sprintf("%s (task %d)", k, holder[k])
	}
	for _, t := range holder {
		tasks[t] = true
	}
	list := strings.Join(named, ", ")
	if n := len(keys) - len(shown); n > 0 {
		list += fmt.Sprintf(" and %d more", n)
	}
	subject, verb := ota.Plural(len(keys), "device", "devices"), "are"
	if len(keys) == 1 {
		verb = "is"
	}
	them, it := "those tasks", "them"
	if len(tasks) == 1 {
		them, it = "that task", "it"
	}
	e := ota.Errorf(ota.ECONFLICT, "%s %s already being upgraded on module %s by another task: %s; wait for %s to end, cancel %s, or leave the busy devices out",
		subject, verb, module, list, them, it)
	e.Details = keys
	e.Fields = []ota.FieldError{{Field: "target.skip_busy", Message: e.Message}}
	return e
}

// jobsFor orders the candidates for the rollout (a stable hash, so a 10%
// sample includes a 5% one) and assigns them to phases.
func (e *Engine) jobsFor(fw ota.Firmware, cands []ota.Candidate, spec ota.TaskSpec) []ota.Job {
	// Sorted as (rank, index) pairs of 16 bytes rather than whole
	// candidates: a million of them are moved about 20 times each.
	type ranked struct {
		rank uint64
		i    int
	}
	rs := make([]ranked, len(cands))
	ranker := ota.NewRanker(spec.Target.Seed, fw.Product)
	for i, c := range cands {
		rs[i] = ranked{ranker.Rank(c.Key), i}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		if a.rank != b.rank {
			return cmp.Compare(a.rank, b.rank)
		}
		return strings.Compare(cands[a.i].Key, cands[b.i].Key)
	})
	if p := spec.Target.Percent; p > 0 && p < 100 {
		rs = rs[:int(math.Ceil(float64(len(rs))*p/100))]
	}
	jobs := make([]ota.Job, len(rs))
	for i, r := range rs {
		c := cands[r.i]
		jobs[i] = ota.Job{
			DeviceID: c.DeviceID, Device: c.Key, Product: fw.Product, Module: fw.Module,
			State: newJobState(c.Version), Attempt: 1, Phase: ota.PhaseIndex(ota.PhaseOf(i, len(rs), spec.Policy.Phases)),
			FromVersion: c.Version, Version: fw.Version,
		}
	}
	return jobs
}

// newJobState is queued for a device whose version is known, and awaits
// the version of a device that never reported one.
func newJobState(version string) ota.JobState {
	if version == "" {
		return ota.JobAwaitingVersion
	}
	return ota.JobQueued
}

// absent returns the keys that have does not hold, in their order.
func absent(keys []string, have map[string]bool) []string {
	var out []string
	for _, k := range keys {
		if !have[k] {
			out = append(out, k)
		}
	}
	return out
}

func listed(keys []string) string {
	if len(keys) <= maxListed {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(keys)-maxListed)
}

// Control actions an operator can take on a task.

// Pause stops new job starts; jobs in flight go on.
func (e *Engine) Pause(ctx context.Context, id int64) (ota.Task, error) {
	return e.act(ctx, id, ota.TaskPause)
}

// Resume lets a paused task start jobs again.
func (e *Engine) Resume(ctx context.Context, id int64) (ota.Task, error) {
	return e.act(ctx, id, ota.TaskResume)
}

// Cancel ends a task: queued jobs are cancelled, and devices that were told
// to upgrade but have not started installing are told it is withdrawn.
func (e *Engine) Cancel(ctx context.Context, id int64) (ota.Task, error) {
	return e.act(ctx, id, ota.TaskCancel)
}

func (e *Engine) act(ctx context.Context, id int64, a ota.TaskAction) (ota.Task, error) {
	actor := ota.ActorFrom(ctx)
	err := e.control(ctx, func(ctx context.Context) error {
		ts, err := e.taskFor(ctx, id)
		if err != nil {
			return err
		}
		return e.changeTask(ctx, ts, a, "by "+actor, actor)
	})
	if err != nil {
		return ota.Task{}, err
	}
	return e.st.GetTask(ctx, id)
}

// Advance opens the next phase of a task with a manual phase gate.
func (e *Engine) Advance(ctx context.Context, id int64) (ota.Task, error) {
	actor := ota.ActorFrom(ctx)
	err := e.control(ctx, func(ctx context.Context) error {
		ts, err := e.taskFor(ctx, id)
		if err != nil {
			return err
		}
		if int(ts.task.Phase)+1 >= len(ts.task.Policy.Phases) {
			return ota.Errorf(ota.ECONFLICT, "task %d is in its last phase already", id)
		}
		if ts.task.State != ota.TaskRunning && ts.task.State != ota.TaskPaused {
			return ota.Errorf(ota.ECONFLICT, "task %d is %s: only a running or paused task advances", id, ts.task.State)
		}
		return e.advancePhase(ctx, ts, actor)
	})
	if err != nil {
		return ota.Task{}, err
	}
	return e.st.GetTask(ctx, id)
}

// RetryFailed puts every failed and timed-out job of a task back in the
// queue (attempts are counted on), and runs the task again if it had ended
// as completed.
func (e *Engine) RetryFailed(ctx context.Context, id int64) (ota.Task, int, error) {
	actor := ota.ActorFrom(ctx)
	var n int
	err := e.control(ctx, func(ctx context.Context) error {
		var err error
		if n, err = e.retryFailed(ctx, id, actor); err != nil || n == 0 {
			return err
		}
		ts := e.tasks[id]
		if ts.task.State == ota.TaskCompleted {
			return e.changeTask(ctx, ts, ota.TaskReopen, "", actor)
		}
		return nil
	})
	if err != nil {
		return ota.Task{}, 0, err
	}
	t, err := e.st.GetTask(ctx, id)
	return t, n, err
}

func (e *Engine) retryFailed(ctx context.Context, id int64, actor string) (int, error) {
	return e.retryFailedOf(ctx, id, nil, actor)
}

// retryFailedOf requeues the failed and timed-out jobs of a task, only
// those of the given devices when any are given.
func (e *Engine) retryFailedOf(ctx context.Context, id int64, devices []string, actor string) (int, error) {
	ts, err := e.taskFor(ctx, id)
	if err != nil {
		return 0, err
	}
	if s := ts.task.State; s == ota.TaskCancelled || s == ota.TaskAborted {
		return 0, ota.Errorf(ota.ECONFLICT, "task %d is %s: its failed jobs cannot be retried; create a new task for them", id, s)
	}
	n := 0
	var after int64
	for {
		jobs, err := e.st.JobsWithVersions(ctx, ota.JobVersionQuery{
			TaskID: id, States: []ota.JobState{ota.JobFailed, ota.JobTimedOut}, AfterID: after, Limit: e.cfg.BatchSize,
			Devices: devices,
		})
		if err != nil || len(jobs) == 0 {
			return n, err
		}
		w := e.newWork()
		for _, jv := range jobs {
			w.addJobs([]ota.Job{jv.Job})
			after = jv.Job.ID
			n += w.retry(jv, actor)
		}
		ts.wantSweep = true
		if err := e.commit(ctx, w); err != nil {
			return n, err
		}
		e.reverify(ctx, w.late)
	}
}

// retry requeues a failed or timed-out job, unless its device already runs
// the target version (a success reported late, or before this was
// recorded): that job succeeds instead, and nothing is sent again. It
// returns 1 for a requeued job.
func (w *work) retry(jv ota.JobVersion, actor string) int {
	if ota.SameVersion(jv.Version, jv.Job.Version) {
		w.lateSuccess(jv.Job.ID, jv.Version)
		return 0
	}
	if w.transition(jv.Job.ID, ota.JobInput{Kind: ota.JobRequeue}, actor) {
		return 1
	}
	return 0
}

// taskFor returns the loop's state of a task, loading a terminal task when
// an operator acts on it (completed tasks can be retried).
func (e *Engine) taskFor(ctx context.Context, id int64) (*taskState, error) {
	if ts := e.tasks[id]; ts != nil {
		return ts, nil
	}
	t, err := e.st.GetTask(ctx, id)
	if err != nil {
		return nil, err
	}
	return e.track(ctx, ota.ActiveTask{Task: t})
}

func (e *Engine) loadTasks(ctx context.Context) error {
	active, err := e.st.ActiveTasks(ctx)
	if err != nil {
		return err
	}
	for _, a := range active {
		ts, err := e.track(ctx, a)
		if err != nil {
			return err
		}
		if err := e.settleReported(ctx, ts); err != nil {
			return err
		}
	}
	return nil
}

// settleReported settles the jobs awaiting a version their device has
// reported meanwhile: a device whose report was stored between the
// reading of a task's targets and the storing of its jobs (or before a
// crash in between) is not left waiting for a report it already sent.
// The task's counts are exact: with none awaiting, there is nothing to
// read (a read that, right after a million jobs went in, cost 2 µs a job).
func (e *Engine) settleReported(ctx context.Context, ts *taskState) error {
	if !ts.awaitsVersions() {
		return nil
	}
	var after int64
	for {
		jobs, err := e.st.JobsWithVersions(ctx, ota.JobVersionQuery{
			TaskID: ts.task.ID, States: []ota.JobState{ota.JobAwaitingVersion}, AfterID: after, Limit: e.cfg.BatchSize, Reported: true,
		})
		if err != nil || len(jobs) == 0 {
			return err
		}
		w := e.newWork()
		for _, jv := range jobs {
			w.addJobs([]ota.Job{jv.Job})
			w.reportVersion(jv.Job.ID, jv.Version, "engine")
			after = jv.Job.ID
		}
		if err := e.commit(ctx, w); err != nil {
			return err
		}
	}
}

// awaitsVersions tells whether any of the task's jobs awaits a version.
func (ts *taskState) awaitsVersions() bool {
	for _, byState := range ts.counts {
		if byState[ota.JobAwaitingVersion] > 0 {
			return true
		}
	}
	return false
}

// track puts a task in the loop's cache with its firmware and counts.
func (e *Engine) track(ctx context.Context, a ota.ActiveTask) (*taskState, error) {
	fw, err := e.firmwareOf(ctx, a.Task.FirmwareID)
	if err != nil {
		return nil, err
	}
	counts, err := e.st.TaskPhaseCounts(ctx, a.Task.ID)
	if err != nil {
		return nil, err
	}
	return e.cache(a, fw, counts)
}

// cache puts a task in the loop's cache with its firmware and counts.
func (e *Engine) cache(a ota.ActiveTask, fw ota.Firmware, counts ota.PhaseCounts) (*taskState, error) {
	var err error
	ts := &taskState{task: a.Task, firmware: fw, counts: counts, wantSweep: true}
	if w := a.Task.Policy.Window; w != nil {
		if ts.loc, err = w.Location(); err != nil {
			return nil, err
		}
	}
	if len(a.Engine) > 0 {
		if err := json.Unmarshal(a.Engine, &ts.book); err != nil {
			e.log.Warn("task bookkeeping unreadable: starting afresh", "task", a.Task.ID, "err", err)
		}
	}
	e.tasks[a.Task.ID] = ts
	return ts, nil
}

func (e *Engine) firmwareOf(ctx context.Context, id int64) (ota.Firmware, error) {
	if fw, ok := e.firmware[id]; ok {
		return fw, nil
	}
	fw, err := e.st.GetFirmware(ctx, id)
	if err != nil {
		return fw, err
	}
	e.firmware[id] = fw
	return fw, nil
}

// sortedTaskIDs orders the loop's tasks so that older tasks go first.
func (e *Engine) sortedTaskIDs() []int64 {
	ids := make([]int64, 0, len(e.tasks))
	for id := range e.tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// UpdatePolicy changes the policy of a task that has not ended by a JSON
// merge patch (see ota.Policy.Patch): the stored task, the loop's copy and
// an event naming each change (old -> new) are written together, and the
// task is planned again at once. Target, firmware and mode stay fixed.
func (e *Engine) UpdatePolicy(ctx context.Context, id int64, patch map[string]json.RawMessage) (ota.Task, error) {
	actor := ota.ActorFrom(ctx)
	err := e.control(ctx, func(ctx context.Context) error {
		ts, err := e.taskFor(ctx, id)
		if err != nil {
			return err
		}
		return e.updatePolicy(ctx, ts, patch, actor)
	})
	if err != nil {
		return ota.Task{}, err
	}
	return e.st.GetTask(ctx, id)
}

func (e *Engine) updatePolicy(ctx context.Context, ts *taskState, patch map[string]json.RawMessage, actor string) error {
	if s := ts.task.State; s.Terminal() {
		return ota.Errorf(ota.ECONFLICT, "task %d is %s: only a scheduled, running or paused task can be changed", ts.task.ID, s)
	}
	policy, err := ts.task.Policy.Patch(patch, e.now())
	if err != nil {
		return err
	}
	changes := ota.PolicyDiff(ts.task.Policy, policy)
	if len(changes) == 0 {
		return nil
	}
	loc, err := locationOf(policy)
	if err != nil {
		return err
	}
	next := ts.task
	next.Policy = policy
	if err := e.saveTask(ctx, ts, next, policyEvent(next, changes, actor, e.now())); err != nil {
		return err
	}
	ts.loc = loc
	ts.wantSweep = true
	e.poke()
	return nil
}

func locationOf(p ota.Policy) (*time.Location, error) {
	if p.Window == nil {
		return nil, nil
	}
	return p.Window.Location()
}

func policyEvent(t ota.Task, changes []ota.PolicyChange, actor string, at time.Time) ota.Event {
	data := make(map[string]string, len(changes))
	for _, c := range changes {
		data[c.Field] = c.Old + " -> " + c.New
	}
	return ota.Event{
		At: at, Actor: actor, Kind: ota.KindTask, Action: ota.ActionPolicyChanged,
		Product: t.Product, TaskID: t.ID, FirmwareID: t.FirmwareID,
		Message: "policy changed: " + ota.DiffText(changes), Data: data,
	}
}
