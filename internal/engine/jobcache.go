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

// cachedActive splits devices into those whose active jobs the loop
// holds, returned as stored, and those it must read.
func (e *Engine) cachedActive(devices []int64) (jobs []ota.Job, missing []int64) {
	for _, id := range devices {
		if js, ok := e.devJobs[id]; ok {
			jobs = append(jobs, js...)
		} else {
			missing = append(missing, id)
		}
	}
	return jobs, missing
}

// activeJobs returns the active jobs of devices (sorted, unique), from the
// cache where it can, and caches what it read.
func (e *Engine) activeJobs(ctx context.Context, devices []int64) ([]ota.Job, error) {
	jobs, missing := e.cachedActive(devices)
	if len(missing) == 0 {
		return jobs, nil
	}
	read, err := e.st.ActiveJobs(ctx, missing)
	if err != nil {
		return nil, fmt.Errorf("load active jobs: %w", err)
	}
	byDevice := make(map[int64][]ota.Job, len(missing))
	for _, j := range read {
		byDevice[j.DeviceID] = append(byDevice[j.DeviceID], j)
	}
	for _, id := range missing {
		e.devJobs[id] = byDevice[id] // nil: known to have none
	}
	return append(jobs, read...), nil
}

// noteJobs brings the cache up to date with a written change: each job
// written replaces its old self (its revision one higher, as the store
// counts), and leaves the device's list when it ended. Devices given new
// jobs, and the jobs of conflicts, are forgotten and read again.
func (e *Engine) noteJobs(c ota.ChangeSet, conflicts []int64) {
	for _, u := range c.Jobs {
		id := u.New.DeviceID
		js, ok := e.devJobs[id]
		if !ok {
			continue
		}
		if slices.Contains(conflicts, u.New.ID) {
			delete(e.devJobs, id)
			continue
		}
		js = slices.DeleteFunc(slices.Clone(js), func(j ota.Job) bool { return j.ID == u.New.ID })
		if !u.New.State.Terminal() {
			n := u.New
			n.Rev = u.Old.Rev + 1
			js = append(js, n)
		}
		e.devJobs[id] = js
	}
	for _, j := range c.NewJobs {
		delete(e.devJobs, j.DeviceID)
	}
	for _, id := range c.DeleteDevices {
		delete(e.devJobs, id)
	}
}

// addJobs adds a new task's jobs, as the store filled them, to the devices
// the cache holds (the others are read when heard from). Before, a task's
// creation emptied the cache, and every device of a running fleet read its
// active jobs again at its next message.
func (e *Engine) addJobs(jobs []ota.Job) {
	for _, j := range jobs {
		if js, ok := e.devJobs[j.DeviceID]; ok {
			e.devJobs[j.DeviceID] = append(slices.Clip(js), j)
		}
	}
}

// forgetJobs empties the cache after a write of jobs outside commit.
func (e *Engine) forgetJobs() { clear(e.devJobs) }

// pruneJobs drops the cached jobs of devices no longer in e.seen.
func (e *Engine) pruneJobs() {
	for id := range e.devJobs {
		if _, ok := e.seen[id]; !ok {
			delete(e.devJobs, id)
		}
	}
}
