package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/otter-ota/otter/internal/ota"
)

// The loop keeps the active jobs of the devices it heard recently (those in
// e.seen), so that a device's next message in an upgrade, a fraction of a
// second later, does not read them again. The engine is the only writer of
// jobs and every job change goes through commit, which keeps the cache as
// the store; a task's creation adds its new jobs (the store fills them as
// stored), and the write that touches jobs by the thousand without naming
// them (cancelling a task's queued jobs) empties it.

// activeJobs hands add the active jobs of devices (sorted, unique), from
// the cache where it can, and caches what it read. The cached lists go to
// add as they are, a device at a time: add copies the jobs it keeps.
func (e *Engine) activeJobs(ctx context.Context, devices []int64, add func([]ota.Job)) error {
	var missing []int64
	for _, id := range devices {
		if js, ok := e.devJobs[id]; ok {
			add(js)
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	read, err := e.st.ActiveJobs(ctx, missing)
	if err != nil {
		return fmt.Errorf("load active jobs: %w", err)
	}
	byDevice := make(map[int64][]ota.Job, len(missing))
	for _, j := range read {
		byDevice[j.DeviceID] = append(byDevice[j.DeviceID], j)
	}
	for _, id := range missing {
		e.devJobs[id] = byDevice[id] // nil: known to have none
	}
	add(read)
	return nil
}

// noteJobs brings the cache up to date with a written change: each job
// written replaces its old self (its revision one higher, as the store
// counts), and leaves the device's list when it ended; a device waiting
// for its job of a new task has its entry whole again when that job is
// written. Devices given new jobs, and the jobs of conflicts, are
// forgotten and read again.
func (e *Engine) noteJobs(c ota.ChangeSet, conflicts []int64) {
	for _, u := range c.Jobs {
		id := u.New.DeviceID
		js, ok := e.devJobs[id]
		if !ok {
			continue
		}
		if slices.Contains(conflicts, u.New.ID) {
			e.dropJobs(id)
			continue
		}
		e.keepJobs()
		// In place: the cache's lists are its own (activeJobs' add copies
		// what it keeps).
		js = slices.DeleteFunc(js, func(j ota.Job) bool { return j.ID == u.New.ID })
		if !u.New.State.Terminal() {
			n := u.New
			n.Rev = u.Old.Rev + 1
			js = append(js, n)
		}
		e.devJobs[id] = js
	}
	for _, j := range c.NewJobs {
		e.dropJobs(j.DeviceID)
	}
	for _, id := range c.DeleteDevices {
		e.dropJobs(id)
	}
}

// holdJobs caches active, the active jobs of a task's candidates as just
// read, for those the loop heard recently (in e.seen) and those the store
// has online: the devices about to take a job and report on it. Entries
// of devices not in e.seen are kept SeenEvery past the creation and past
// each job start (keepJobs, pruneJobs): a fleet's devices connect over
// longer than that before a task.
func (e *Engine) holdJobs(cands []ota.Candidate, active []ota.Job) {
	hold := make(map[int64][]ota.Job)
	for _, c := range cands {
		if _, ok := e.seen[c.DeviceID]; ok || c.Online {
			hold[c.DeviceID] = nil // known to have none unless read below
		}
	}
	if len(hold) == 0 {
		return
	}
	for _, j := range active {
		if js, ok := hold[j.DeviceID]; ok {
			hold[j.DeviceID] = append(js, j)
		}
	}
	for id, js := range hold {
		e.devJobs[id] = js
	}
	now := e.now()
	e.devJobsKeep, e.devJobsKeepMax = now.Add(e.cfg.SeenEvery), now.Add(keepHeldFor*e.cfg.SeenEvery)
}

// keepHeldFor bounds, in SeenEvery, how long the entries a task's creation
// held are kept while its jobs start (keepJobs): a push task's devices
// start within seconds, and a device is in e.seen from its first message.
const keepHeldFor = 6

// keepJobs keeps the held entries SeenEvery past a job's start, so that
// the device's first message, its answer to the command, finds its entry;
// never past keepHeldFor SeenEvery after the creation.
func (e *Engine) keepJobs() {
	if k := e.now().Add(e.cfg.SeenEvery); k.After(e.devJobsKeep) {
		e.devJobsKeep = k
		if k.After(e.devJobsKeepMax) {
			e.devJobsKeep = e.devJobsKeepMax
		}
	}
}

// addJobs adds a new task's active jobs, as the store filled them (ids,
// revisions), to the devices the cache holds; the others are read when
// heard from. Before the store returned them, a task's creation emptied
// the cache, and every device of a running fleet read its active jobs
// again at its next message.
func (e *Engine) addJobs(jobs []ota.Job) {
	for _, j := range jobs {
		if js, ok := e.devJobs[j.DeviceID]; ok && !j.State.Terminal() {
			e.devJobs[j.DeviceID] = append(slices.Clip(js), j)
		}
	}
}

// dropJobs forgets one device's cached jobs.
func (e *Engine) dropJobs(id int64) { delete(e.devJobs, id) }

// forgetJobs empties the cache after a write of jobs outside commit.
func (e *Engine) forgetJobs() { clear(e.devJobs) }

// pruneJobs drops the cached jobs of devices no longer in e.seen, once
// the entries a task's creation held may go (devJobsKeep).
func (e *Engine) pruneJobs() {
	if e.now().Before(e.devJobsKeep) {
		return
	}
	for id := range e.devJobs {
		if _, ok := e.seen[id]; !ok {
			e.dropJobs(id)
		}
	}
}
