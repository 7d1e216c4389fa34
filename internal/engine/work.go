package engine

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// work gathers the effects of one batch: the jobs as the batch sees them,
// the change to write, and the messages to send once it is written.
type work struct {
	e    *Engine
	now  time.Time
	jobs map[int64]*ota.Job
	// orig keeps each job as read, so the store can check its revision and
	// count the move from its old state to its final one.
	orig   map[int64]ota.Job
	active map[jobRef]int64
	// ended maps a device's module to its latest job when that failed or
	// timed out (loaded for version reports: a late success settles it).
	ended map[jobRef]int64
	// late marks the tasks with a late success in this batch.
	late map[int64]bool
	// tags holds the tags of the batch's devices when a dynamic task may
	// take them, and members their jobs in the running dynamic tasks;
	// joined marks devices given a dynamic job in this batch.
	tags    map[int64]map[string]string
	members map[ota.TaskDevice]bool
	joined  map[jobRef]bool
	// last holds, for the devices that poll in this batch, the newest job
	// of each of their modules, so a poll can repeat a cancel.
	last map[int64][]ota.Job
	// heard holds the batch's messages whose last_seen is held back (see
	// Config.SeenEvery): the latest per device.
	heard  map[int64]time.Time
	change ota.ChangeSet
	sends  []outgoing
}

// outgoing is a downlink message to send after the commit.
type outgoing struct {
	product, device string
	msg             wire.Message
}

func (e *Engine) newWork() *work {
	return &work{
		e:      e,
		now:    e.now(),
		ended:  make(map[jobRef]int64),
		late:   make(map[int64]bool),
		jobs:   make(map[int64]*ota.Job),
		orig:   make(map[int64]ota.Job),
		active: make(map[jobRef]int64),
		joined: make(map[jobRef]bool),
	}
}

// addJobs adds copies of jobs the batch does not hold yet (one allocation
// for all of them).
func (w *work) addJobs(jobs []ota.Job) {
	var buf []ota.Job
	for i := range jobs {
		if _, ok := w.jobs[jobs[i].ID]; ok {
			continue
		}
		if buf == nil {
			buf = make([]ota.Job, 0, len(jobs)-i)
		}
		buf = append(buf, jobs[i])
		j := &buf[len(buf)-1]
		w.jobs[j.ID] = j
		if !j.State.Terminal() {
			w.active[refOf(*j)] = j.ID
		}
	}
}

// activeOf lists the device's active jobs known to the batch.
func (w *work) activeOf(device int64) []ota.Job {
	var out []ota.Job
	for ref, id := range w.active {
		if ref.device == device {
			out = append(out, *w.jobs[id])
		}
	}
	return out
}

// transition applies one input to a job; when it changes the job, the new
// state is recorded with its event, and follow-ups run (a retry is
// scheduled for a failure the policy retries, a cancel is sent).
func (w *work) transition(id int64, in ota.JobInput, actor string) bool {
	j := w.jobs[id]
	next, changed := applyInput(*j, in, w.now, w.policyOf(*j))
	if !changed {
		return false
	}
	if _, ok := w.orig[id]; !ok {
		w.orig[id] = *j
	}
	prev := j.State
	*j = next
	if j.State.Terminal() {
		delete(w.active, refOf(*j))
	}
	if prev != j.State || prev != ota.JobDownloading {
		// A download's percent rising is written to the job (its percent
		// is live in every list) but is no event of its own: the history
		// keeps every change of state, and a 64 KiB download's three
		// percent reports were a third of a fleet's event rows.
		w.change.Events = append(w.change.Events, jobEvent(*j, prev, actor, w.now))
	}
	if j.State == ota.JobFailed || j.State == ota.JobTimedOut {
		w.maybeRetry(j)
	}
	return true
}

func (w *work) policyOf(j ota.Job) ota.Policy {
	if ts := w.e.tasks[j.TaskID]; ts != nil {
		return ts.task.Policy
	}
	return ota.Policy{}
}

// applyInput applies one input under the task's policy: a job that starts
// flight gets the policy's timeout as its deadline.
func applyInput(j ota.Job, in ota.JobInput, now time.Time, p ota.Policy) (ota.Job, bool) {
	if in.Timeout == 0 {
		in.Timeout = time.Duration(p.Timeout)
	}
	next, ch := j.Apply(in, now)
	return next, ch.Changed
}

// maybeRetry puts a failed or timed-out job back in the queue when its
// task's policy retries that failure and attempts remain.
func (w *work) maybeRetry(j *ota.Job) {
	ts := w.e.tasks[j.TaskID]
	if ts == nil || ts.task.State.Terminal() {
		return
	}
	delay, ok := ts.task.Policy.RetryAfter(*j)
	if !ok {
		return
	}
	next, changed := applyInput(*j, ota.JobInput{Kind: ota.JobRequeue, Delay: delay}, w.now, ts.task.Policy)
	if !changed {
		return
	}
	prev := j.State
	*j = next
	w.active[refOf(*j)] = j.ID
	ev := jobEvent(*j, prev, "engine", w.now)
	ev.Action = "retry_scheduled"
	ev.Message = fmt.Sprintf("attempt %d after %s", j.Attempt, roundDelay(delay))
	w.change.Events = append(w.change.Events, ev)
}

// send queues the job's upgrade command for the device and notes when it
// was sent, so an unanswered command is sent again later.
func (w *work) send(d Device, j ota.Job, ts *taskState) {
	cur := w.jobs[j.ID]
	if _, ok := w.orig[j.ID]; !ok {
		w.orig[j.ID] = *cur
	}
	at := w.now
	cur.SentAt = &at
	w.sends = append(w.sends, outgoing{d.Product, d.Key, w.e.upgradeMessage(d, *cur, ts)})
}

// sendCancel withdraws a job the device may have received.
func (w *work) sendCancel(j ota.Job) {
	w.sends = append(w.sends, outgoing{j.Product, j.Device, wire.CancelUpgrade(strconv.FormatInt(j.ID, 10), j.Attempt)})
}

// commit writes the batch, then updates the loop's counts and sends the
// downlink messages. Nothing is sent for a change that was not written.
func (e *Engine) commit(ctx context.Context, w *work) error {
	w.seal()
	if w.empty() {
		e.noteSeen(w.change, w.heard)
		return nil
	}
	conflicts, err := e.write(ctx, w)
	if err != nil {
		return err
	}
	e.settle(w, conflicts)
	return nil
}

// seal adds the batch's job changes to its change set: each job as read
// against its final state. It is called once, before write.
func (w *work) seal() {
	w.change.Jobs = slices.Grow(w.change.Jobs, len(w.orig))
	for id, old := range w.orig {
		w.change.Jobs = append(w.change.Jobs, ota.JobUpdate{Old: old, New: *w.jobs[id]})
	}
}

// write stores a sealed batch and returns the changes refused as stale. It
// reads nothing of the loop's state but w, so it may run beside the loop
// (startJobsOverlapped).
func (e *Engine) write(ctx context.Context, w *work) ([]int64, error) {
	start := time.Now()
	conflicts, err := e.st.Apply(ctx, w.change)
	e.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, fmt.Errorf("store batch: %w", err)
	}
	return conflicts, nil
}

// settle applies a written batch to the loop's state and sends its
// messages.
func (e *Engine) settle(w *work, conflicts []int64) {
	if len(conflicts) > 0 {
		// Another writer moved these jobs first; the device will resend.
		e.log.Warn("jobs changed by another writer", "jobs", conflicts)
	}
	e.noteSeen(w.change, w.heard)
	e.noteJobs(w.change, conflicts)
	for _, j := range w.change.NewJobs {
		if ts := e.tasks[j.TaskID]; ts != nil {
			ts.counts.Add(int(j.Phase), j.State, 1)
			ts.task.Total++
			ts.wantSweep = true
			e.poke()
		}
	}
	skip := make(map[int64]bool, len(conflicts))
	for _, id := range conflicts {
		skip[id] = true
	}
	for _, c := range w.change.Jobs {
		if !skip[c.Old.ID] {
			e.countMove(c.Old, c.New)
		}
	}
	e.signSends(w.sends)
	for _, s := range w.sends {
		e.down.Send(s.product, s.device, string(s.msg.Kind()), wire.Encode(s.msg))
	}
	e.metrics.downlinks.Add(float64(len(w.sends)))
}

func (w *work) empty() bool {
	c := w.change
	return len(c.Jobs) == 0 && len(c.NewJobs) == 0 && len(c.Presence) == 0 && len(c.Seen) == 0 &&
		len(c.Versions) == 0 && len(c.Tasks) == 0 && len(c.DeleteDevices) == 0 && len(c.Events) == 0 && len(w.sends) == 0
}

// jobEvent records one job transition for the history.
func jobEvent(j ota.Job, prev ota.JobState, actor string, at time.Time) ota.Event {
	data := map[string]string{"from": string(prev), "state": string(j.State), "attempt": strconv.Itoa(j.Attempt)}
	if j.State == ota.JobDownloading {
		data["percent"] = strconv.Itoa(j.Percent)
	}
	if j.Code != "" {
		data["code"] = j.Code
	}
	return ota.Event{
		At: at, Actor: actor, Kind: ota.KindJob, Action: string(j.State),
		Product: j.Product, Device: j.Device, TaskID: j.TaskID, JobID: j.ID,
		Message: j.Message, Data: data,
	}
}

// roundDelay shortens a delay for people: whole seconds, or hundredths
// under a second.
func roundDelay(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Second)
}
