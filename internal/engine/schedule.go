package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// taskState is the loop's view of one task: the task, its firmware, its
// exact counts (kept by applying every committed job move) and the policy
// bookkeeping that survives restarts.
type taskState struct {
	task     ota.Task
	firmware ota.Firmware
	counts   ota.PhaseCounts
	book     book
	loc      *time.Location

	// wantSweep says queued jobs may have become startable (a device came
	// online, a phase opened, a retry came due); sweeping is skipped
	// otherwise, so a task whose remaining devices are offline costs nothing.
	wantSweep bool
	nextSweep time.Time
	// budget is how many request-mode offers may still be made before the
	// next plan (request mode starts jobs when devices ask).
	budget     int
	planned    bool // budget was set by a plan at least once
	nextResend time.Time
	wake       time.Time
}

// book is the engine's bookkeeping stored with a task.
type book struct {
	Bucket ota.RateBucket `json:"bucket"`
}

// sweepEvery bounds how often a task whose queued devices were all offline
// is looked at again without a wake-up (retries coming due).
const sweepEvery = 5 * time.Second

// schedule runs one pass of every task's policy, then the job timers.
func (e *Engine) schedule(ctx context.Context) {
	for _, id := range e.sortedTaskIDs() {
		ts := e.tasks[id]
		if err := e.step(ctx, ts); err != nil && ctx.Err() == nil {
			e.log.Error("task step failed", "task", id, "err", err)
		}
		if ts.task.State.Terminal() {
			delete(e.tasks, id)
			e.setWaiting(id, nil)
		}
	}
	if err := e.expireJobs(ctx); err != nil && ctx.Err() == nil {
		e.log.Error("job timeouts failed", "err", err)
	}
	e.metrics.activeTasks.Set(float64(len(e.tasks)))
}

func (e *Engine) step(ctx context.Context, ts *taskState) error {
	now := e.now()
	switch ts.task.State {
	case ota.TaskScheduled:
		if p := ts.task.Policy.Start; p != nil && now.Before(*p) {
			e.setWaiting(ts.task.ID, ts.task.Policy.Waiting(ts.waitInput(ts.planInput(now)), ota.PlanResult{}))
			return nil
		}
		e.setWaiting(ts.task.ID, nil)
		if err := e.changeTask(ctx, ts, ota.TaskStart, "", "engine"); err != nil || ts.task.State != ota.TaskRunning {
			return err
		}
		// Planned in the same pass: a device asking as soon as the task
		// runs must find its budget, not an empty one until the next tick.
		return e.run(ctx, ts, now)
	case ota.TaskRunning:
		return e.run(ctx, ts, now)
	}
	e.setWaiting(ts.task.ID, nil)
	return nil
}

// run applies the policy's plan to a running task.
func (e *Engine) run(ctx context.Context, ts *taskState, now time.Time) error {
	r := ts.task.Policy.Plan(ts.planInput(now))
	if r.Abort || r.Expired || r.Complete {
		e.setWaiting(ts.task.ID, nil)
	}
	switch {
	case r.Abort:
		return e.endTask(ctx, ts, ota.TaskAbort, r.Reason, ota.CodeTaskAborted)
	case r.Expired:
		return e.expireTask(ctx, ts)
	case r.Complete:
		return e.complete(ctx, ts)
	case r.AdvancePhase:
		if err := e.advancePhase(ctx, ts, "engine"); err != nil {
			return err
		}
		r = ts.task.Policy.Plan(ts.planInput(now))
	}
	ts.book.Bucket = r.Bucket
	ts.wake = r.Wake
	e.setWaiting(ts.task.ID, ts.task.Policy.Waiting(ts.waitInput(ts.planInput(now)), r))
	// The budget admits devices that ask (request mode) or poll over HTTP;
	// a push task spends it first on connected devices.
	ts.budget, ts.planned = r.Start, true
	if ts.task.Mode == ota.ModeRequest {
		return nil
	}
	if err := e.resend(ctx, ts, now); err != nil {
		return err
	}
	if ts.budget == 0 || (!ts.wantSweep && now.Before(ts.nextSweep)) {
		return nil
	}
	return e.startJobs(ctx, ts, now)
}

func (ts *taskState) planInput(now time.Time) ota.PlanInput {
	in := ota.PlanInput{
		Now: now, Location: ts.loc, Counts: ts.totals(), Phase: int(ts.task.Phase),
		Bucket: ts.book.Bucket, Dynamic: ts.task.Target.Dynamic,
	}
	for s, n := range ts.counts[int(ts.task.Phase)] {
		if s == ota.JobCancelled {
			// Not applicable to its device (superseded, version not
			// eligible): no part of the phase's success rate.
			continue
		}
		in.PhaseJobs += n
		if s == ota.JobSucceeded {
			in.PhaseSucceeded += n
		}
		if s.Terminal() {
			in.PhaseFinished += n
		}
	}
	return in
}

// waitInput adds to a plan's input what Policy.Waiting needs: whether the
// released phases are idle while later ones hold jobs (a phase gate).
func (ts *taskState) waitInput(in ota.PlanInput) ota.WaitInput {
	var released, later int64 // queued or in flight
	for phase, byState := range ts.counts {
		for s, n := range byState {
			switch {
			case s != ota.JobQueued && !s.InFlight():
			case phase <= int(ts.task.Phase):
				released += n
			default:
				later += n
			}
		}
	}
	return ota.WaitInput{
		Now: in.Now, Location: ts.loc, Scheduled: ts.task.State == ota.TaskScheduled, Phase: int(ts.task.Phase),
		GateHeld: released == 0 && later > 0, PhaseSucceeded: in.PhaseSucceeded, PhaseFinished: in.PhaseFinished, PhaseJobs: in.PhaseJobs,
	}
}

// setWaiting records what task id waits for (nil: nothing).
func (e *Engine) setWaiting(id int64, w *ota.Waiting) {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	if w == nil {
		delete(e.waits, id)
		return
	}
	if e.waits == nil {
		e.waits = make(map[int64]*ota.Waiting)
	}
	e.waits[id] = w
}

// Waiting returns what task id waited for at its last plan (at most a tick
// ago), or nil when it was not held by its policy. The result is a copy.
func (e *Engine) Waiting(id int64) *ota.Waiting {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	w, ok := e.waits[id]
	if !ok {
		return nil
	}
	c := *w
	return &c
}

// totals sums the counts over phases.
func (ts *taskState) totals() map[ota.JobState]int64 {
	out := make(map[ota.JobState]int64)
	for _, byState := range ts.counts {
		for s, n := range byState {
			out[s] += n
		}
	}
	return out
}

// startJobs starts up to the task's budget of queued jobs of a push task whose devices are
// online, in rollout order, a batch per transaction, sending each command
// after its batch is stored. Each read goes on from the last job of the
// batch before it: the sweep holds the engine's loop, so nothing it passed
// can come back to the queue meanwhile.
func (e *Engine) startJobs(ctx context.Context, ts *taskState, now time.Time) error {
	if ts.budget <= 0 {
		return nil
	}
	q := ota.QueuedQuery{TaskID: ts.task.ID, MaxPhase: int(ts.task.Phase), OnlineOnly: true, Now: now}
	if e.readsBeside {
		q.Limit = e.startLimit(ctx, ts.budget)
		return e.startJobsOverlapped(ctx, ts, q)
	}
	started := 0
	for {
		q.Limit = e.startLimit(ctx, ts.budget)
		jobs, last, err := e.st.QueuedJobs(ctx, q)
		if err != nil {
			return err
		}
		if len(jobs) > 0 {
			if err := e.commit(ctx, e.startWork(ts, jobs)); err != nil {
				return err
			}
			e.metrics.jobsStarted.Add(float64(len(jobs)))
			started += len(jobs)
			ts.budget -= len(jobs)
		}
		switch {
		case len(jobs) < q.Limit:
			return e.starved(ctx, ts, q.Now, started)
		case ts.budget <= 0:
			return e.spent(ctx, ts, started)
		}
		q.After = &last
	}
}

// startLimit is the size of the next batch of job starts, at most budget.
// The operator's reads go first: the batch waits for those in flight (up
// to ReadWait) and, while reads come (in flight, or one ended within
// priority.Recent: a client's next page follows in the gap), is ReadBatch
// jobs, so that a read waits behind a few milliseconds of the engine's
// CPU at most, not a full batch's. The start rate drops while reads come
// back to back; it is the full one again a second after the last.
func (e *Engine) startLimit(ctx context.Context, budget int) int {
	if e.cfg.Reads == nil {
		return min(budget, e.cfg.BatchSize)
	}
	t0 := time.Now()
	if !e.cfg.Reads.Wait(ctx, e.cfg.ReadWait) {
		return min(budget, e.cfg.BatchSize)
	}
	e.metrics.readYield.Add(time.Since(t0).Seconds())
	return min(budget, e.cfg.BatchSize, e.cfg.ReadBatch)
}

// startJobsOverlapped is startJobs for a store that reads beside a write
// (ReadsBesideWrites: PostgreSQL). While one batch is written, the next is
// read, then made ready, and the batch before it settled (its counts, its
// commands sent): the database's commit and the engine's work overlap.
// One batch is written at a time, and a batch is settled only once
// stored.
func (e *Engine) startJobsOverlapped(ctx context.Context, ts *taskState, q ota.QueuedQuery) error {
	started := 0
	reading := e.readAhead(ctx, q)
	var writing chan written // the batch being written, if any
	for {
		r := <-reading
		if r.err != nil {
			return errors.Join(r.err, e.settleWritten(writing))
		}
		var w *work
		if len(r.jobs) > 0 {
			w = e.startWork(ts, r.jobs)
			w.seal()
		}
		var prev written
		if writing != nil {
			if prev = <-writing; prev.err != nil {
				return prev.err
			}
			writing = nil
		}
		full := len(r.jobs) == q.Limit
		if w != nil {
			writing = make(chan written, 1)
			go func(w *work) {
				conflicts, err := e.write(ctx, w)
				writing <- written{w, conflicts, err}
			}(w)
			started += len(r.jobs)
			ts.budget -= len(r.jobs)
		}
		more := full && ts.budget > 0
		if more {
			q.After, q.Limit = &r.last, e.startLimit(ctx, ts.budget)
			reading = e.readAhead(ctx, q)
		}
		if prev.w != nil {
			e.settle(prev.w, prev.conflicts)
			e.metrics.jobsStarted.Add(float64(len(prev.w.change.Jobs)))
		}
		if more {
			continue
		}
		if err := e.settleWritten(writing); err != nil {
			return err
		}
		if !full {
			return e.starved(ctx, ts, q.Now, started)
		}
		return e.spent(ctx, ts, started)
	}
}

// startWork makes the batch that starts jobs: each notified, its command
// queued to be sent once the batch is stored.
func (e *Engine) startWork(ts *taskState, jobs []ota.Job) *work {
	w := e.newWork()
	w.addJobs(jobs)
	for _, j := range jobs {
		if w.transition(j.ID, ota.JobInput{Kind: ota.JobNotify}, "engine") {
			w.send(Device{ID: j.DeviceID, Product: j.Product, Key: j.Device}, *w.jobs[j.ID], ts)
		}
	}
	return w
}

// written is a batch write's outcome.
type written struct {
	w         *work
	conflicts []int64
	err       error
}

// settleWritten waits for the batch being written, if any, and settles it.
func (e *Engine) settleWritten(writing chan written) error {
	if writing == nil {
		return nil
	}
	d := <-writing
	if d.err != nil {
		return d.err
	}
	e.settle(d.w, d.conflicts)
	e.metrics.jobsStarted.Add(float64(len(d.w.change.Jobs)))
	return nil
}

// queuedRead is what a read of queued jobs returned.
type queuedRead struct {
	jobs []ota.Job
	last ota.RolloutPos
	err  error
}

// readAhead reads queued jobs beside the loop.
func (e *Engine) readAhead(ctx context.Context, q ota.QueuedQuery) chan queuedRead {
	c := make(chan queuedRead, 1)
	go func() {
		jobs, last, err := e.st.QueuedJobs(ctx, q)
		c <- queuedRead{jobs, last, err}
	}()
	return c
}

// starved notes that a task has no startable job left for now: it is swept
// again when a device connects, a slot frees, or its next retry comes due.
func (e *Engine) starved(ctx context.Context, ts *taskState, now time.Time, started int) error {
	ts.wantSweep = false
	ts.nextSweep = now.Add(sweepEvery)
	next, ok, err := e.st.NextRetry(ctx, ts.task.ID, now)
	if err != nil {
		return err
	}
	if ok && next.Before(ts.nextSweep) {
		ts.nextSweep = next
	}
	return e.spent(ctx, ts, started)
}

// spent takes started jobs from the task's rate bucket and stores it.
func (e *Engine) spent(ctx context.Context, ts *taskState, started int) error {
	if ts.task.Policy.Rate > 0 && started > 0 {
		ts.book.Bucket = ts.book.Bucket.Spend(started)
		return e.saveBook(ctx, ts)
	}
	return nil
}

// admit decides whether a device asking for its queued job of a request
// task may start it now, under the budget of the last plan.
func (ts *taskState) admit(j *ota.Job, now time.Time) (time.Duration, bool) {
	wait := time.Minute
	switch {
	case !ts.planned:
		// Not planned yet (it is, within a tick): no reason to wait long.
		wait = time.Second
	case !ts.wake.IsZero() && ts.wake.After(now):
		wait = ts.wake.Sub(now)
	}
	if j.Phase > ts.task.Phase || ts.budget <= 0 {
		return wait, false
	}
	if j.NextAttemptAt != nil && now.Before(*j.NextAttemptAt) {
		return j.NextAttemptAt.Sub(now), false
	}
	ts.budget--
	if ts.task.Policy.Rate > 0 {
		ts.book.Bucket = ts.book.Bucket.Spend(1)
	}
	return 0, true
}

// resend sends again the commands that connected devices have not acted on.
func (e *Engine) resend(ctx context.Context, ts *taskState, now time.Time) error {
	if now.Before(ts.nextResend) {
		return nil
	}
	ts.nextResend = now.Add(e.cfg.ResendAfter / 4)
	jobs, err := e.st.UnansweredJobs(ctx, ts.task.ID, now.Add(-e.cfg.ResendAfter), e.cfg.BatchSize)
	if err != nil || len(jobs) == 0 {
		return err
	}
	w := e.newWork()
	w.addJobs(jobs)
	for _, j := range jobs {
		w.send(Device{ID: j.DeviceID, Product: j.Product, Key: j.Device}, j, ts)
	}
	return e.commit(ctx, w)
}

// expireJobs times out in-flight jobs whose deadline passed, retrying them
// where the policy says so.
func (e *Engine) expireJobs(ctx context.Context) error {
	now := e.now()
	for {
		jobs, err := e.st.ExpiredJobs(ctx, now, e.cfg.BatchSize)
		if err != nil || len(jobs) == 0 {
			return err
		}
		w := e.newWork()
		w.addJobs(jobs)
		for _, j := range jobs {
			w.transition(j.ID, ota.JobInput{Kind: ota.JobTimeout}, "engine")
		}
		if err := e.commit(ctx, w); err != nil {
			return err
		}
		if len(jobs) < e.cfg.BatchSize {
			return nil
		}
	}
}

// countMove applies a stored job move to the loop's exact counts.
func (e *Engine) countMove(old, new ota.Job) {
	if old.State != new.State {
		e.metrics.jobTransitions.WithLabelValues(string(new.State)).Inc()
	}
	ts := e.tasks[new.TaskID]
	if ts == nil || old.State == new.State && old.Phase == new.Phase {
		return
	}
	ts.counts.Add(int(old.Phase), old.State, -1)
	ts.counts.Add(int(new.Phase), new.State, 1)
	if new.State == ota.JobQueued || new.State.Terminal() {
		ts.wantSweep = true // a slot freed or a retry was queued
		e.poke()
	}
}

// changeTask applies a lifecycle action to a task and stores it with its
// event.
func (e *Engine) changeTask(ctx context.Context, ts *taskState, a ota.TaskAction, reason, actor string) error {
	switch a {
	case ota.TaskCancel:
		return e.endTask(ctx, ts, a, reason, ota.CodeTaskCancelled)
	case ota.TaskAbort:
		return e.endTask(ctx, ts, a, reason, ota.CodeTaskAborted)
	}
	next, changed, err := ts.task.Apply(a, reason, e.now())
	if err != nil || !changed {
		return err
	}
	if err := e.saveTask(ctx, ts, next, taskEvent(next, a, actor, e.now())); err != nil {
		return err
	}
	if next.State == ota.TaskRunning {
		ts.wantSweep = true
		e.poke()
	}
	return nil
}

func (e *Engine) saveTask(ctx context.Context, ts *taskState, next ota.Task, ev ota.Event) error {
	u, err := ts.update(next)
	if err != nil {
		return err
	}
	if _, err := e.st.Apply(ctx, ota.ChangeSet{Tasks: []ota.TaskUpdate{u}, Events: []ota.Event{ev}}); err != nil {
		return fmt.Errorf("store task %d: %w", next.ID, err)
	}
	ts.task = next
	return nil
}

func (e *Engine) saveBook(ctx context.Context, ts *taskState) error {
	u, err := ts.update(ts.task)
	if err != nil {
		return err
	}
	_, err = e.st.Apply(ctx, ota.ChangeSet{Tasks: []ota.TaskUpdate{u}})
	return err
}

func (ts *taskState) update(t ota.Task) (ota.TaskUpdate, error) {
	b, err := json.Marshal(ts.book)
	if err != nil {
		return ota.TaskUpdate{}, err
	}
	return ota.TaskUpdate{Task: t, Engine: b}, nil
}

func taskEvent(t ota.Task, a ota.TaskAction, actor string, at time.Time) ota.Event {
	return ota.Event{
		At: at, Actor: actor, Kind: ota.KindTask, Action: string(t.State),
		Product: t.Product, TaskID: t.ID, FirmwareID: t.FirmwareID, Message: t.Reason,
		Data: map[string]string{"action": string(a), "phase": strconv.Itoa(t.Phase.Number())},
	}
}

// advancePhase releases the next phase of a task.
func (e *Engine) advancePhase(ctx context.Context, ts *taskState, actor string) error {
	next := ts.task
	next.Phase++
	ev := taskEvent(next, "advance", actor, e.now())
	ev.Action = "phase_advanced"
	ev.Message = fmt.Sprintf("phase %d of %d released (up to %g%% of the devices)", next.Phase.Number(), len(next.Policy.Phases), next.Policy.Phases[next.Phase])
	if err := e.saveTask(ctx, ts, next, ev); err != nil {
		return err
	}
	ts.wantSweep = true
	return nil
}

// complete ends a task whose jobs all ended; a verification task whose jobs
// all succeeded releases its firmware for batch tasks.
func (e *Engine) complete(ctx context.Context, ts *taskState) error {
	reason := ""
	totals := ts.totals()
	if ts.task.Verification {
		if totals[ota.JobSucceeded] == ts.task.Total && ts.task.Total > 0 {
			if err := e.st.MarkFirmwareVerified(ctx, ts.task.FirmwareID, ts.task.ID, e.now()); err != nil {
				return err
			}
			delete(e.firmware, ts.task.FirmwareID)
			reason = "every job succeeded: the firmware is verified"
		} else {
			reason = fmt.Sprintf("%d of %s succeeded: the firmware is not verified", totals[ota.JobSucceeded], ota.Plural(ts.task.Total, "job", "jobs"))
		}
	}
	next, changed, err := ts.task.Apply(ota.TaskComplete, reason, e.now())
	if err != nil || !changed {
		return err
	}
	return e.saveTask(ctx, ts, next, taskEvent(next, ota.TaskComplete, "engine", e.now()))
}

// reverify proves the firmware of completed verification tasks whose jobs
// have all come to succeed late: verification counts what the devices run.
func (e *Engine) reverify(ctx context.Context, taskIDs map[int64]bool) {
	for id := range taskIDs {
		if err := e.reverifyTask(ctx, id); err != nil && ctx.Err() == nil {
			e.log.Error("verification after a late success failed", "task", id, "err", err)
		}
	}
}

func (e *Engine) reverifyTask(ctx context.Context, id int64) error {
	if ts := e.tasks[id]; ts != nil && !ts.task.State.Terminal() {
		return nil // complete decides when the task ends
	}
	t, err := e.st.GetTask(ctx, id)
	if err != nil || !t.Verification || t.State != ota.TaskCompleted || t.Total == 0 || t.Counts[ota.JobSucceeded] != t.Total {
		return err
	}
	fw, err := e.st.GetFirmware(ctx, t.FirmwareID)
	if err != nil || fw.VerifiedBy != 0 {
		return err
	}
	if err := e.st.MarkFirmwareVerified(ctx, fw.ID, t.ID, e.now()); err != nil {
		return err
	}
	delete(e.firmware, fw.ID)
	t.Reason = "every job succeeded, some after they had failed or timed out: the firmware is verified"
	// A completed task's engine bookkeeping (its rate bucket) is not worth
	// keeping: it is written afresh.
	_, err = e.st.Apply(ctx, ota.ChangeSet{Tasks: []ota.TaskUpdate{{Task: t}}})
	return err
}

// endTask cancels or aborts a task: its queued jobs are cancelled with the
// task in one transaction, then devices that were told to upgrade but have
// not started installing are told it is withdrawn.
func (e *Engine) endTask(ctx context.Context, ts *taskState, a ota.TaskAction, reason, code string) error {
	now := e.now()
	next, changed, err := ts.task.Apply(a, reason, now)
	if err != nil || !changed {
		return err
	}
	actor := "engine"
	if a == ota.TaskCancel {
		actor = ota.ActorFrom(ctx)
	}
	if err := e.cancelQueued(ctx, ts, code, reason, actor, &next); err != nil {
		return err
	}
	return e.withdraw(ctx, ts, code, reason, actor)
}

// expireTask handles a task whose end time passed: nothing more starts,
// queued and unstarted jobs are cancelled (window_closed), and the task
// completes when the jobs in flight have ended.
func (e *Engine) expireTask(ctx context.Context, ts *taskState) error {
	const why = "the task's end time passed before this device started"
	if err := e.cancelQueued(ctx, ts, ota.CodeWindowClosed, why, "engine", nil); err != nil {
		return err
	}
	if err := e.withdraw(ctx, ts, ota.CodeWindowClosed, why, "engine"); err != nil {
		return err
	}
	if ota.InFlight(ts.totals()) == 0 {
		return e.complete(ctx, ts)
	}
	return nil
}

func (e *Engine) cancelQueued(ctx context.Context, ts *taskState, code, message, actor string, next *ota.Task) error {
	req := ota.CancelRequest{TaskID: ts.task.ID, Code: code, Message: message, Actor: actor, At: e.now()}
	if next != nil {
		u, err := ts.update(*next)
		if err != nil {
			return err
		}
		req.Task = &u
		ev := taskEvent(*next, ota.TaskAction(next.State), actor, e.now())
		req.Event = &ev
	}
	cancelled, err := e.st.CancelQueued(ctx, req)
	e.forgetJobs()
	if err != nil {
		return err
	}
	for phase, byState := range cancelled {
		for state, n := range byState {
			ts.counts.Add(phase, state, -n)
			ts.counts.Add(phase, ota.JobCancelled, n)
		}
	}
	if next != nil {
		ts.task = *next
	}
	return nil
}

// withdrawable are the states in which a device has not started installing.
var withdrawable = []ota.JobState{ota.JobNotified, ota.JobOffered, ota.JobAccepted, ota.JobDownloading, ota.JobDownloaded, ota.JobAwaitingInstall}

// withdraw cancels the jobs whose devices were told to upgrade but have not
// started installing, and tells those devices.
func (e *Engine) withdraw(ctx context.Context, ts *taskState, code, message, actor string) error {
	var after int64
	for {
		jobs, err := e.st.JobsInStates(ctx, ts.task.ID, withdrawable, after, e.cfg.BatchSize)
		if err != nil || len(jobs) == 0 {
			return err
		}
		w := e.newWork()
		w.addJobs(jobs)
		for _, j := range jobs {
			after = j.ID
			if w.transition(j.ID, ota.JobInput{Kind: ota.JobCancel, Code: code, Message: message}, actor) {
				w.sendCancel(j)
			}
		}
		if err := e.commit(ctx, w); err != nil {
			return err
		}
	}
}
