package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/otter-ota/otter/internal/ota"
)

// Dynamic tasks take devices that come to match while they run: by
// reporting a version (inform), by being created, or by a change of their
// tags. A device joins a dynamic task once: one whose job there ended
// (failed, say) does not join again by reconnecting; a retry is the
// operator's call (retry-failed). Only a job cancelled as not applicable
// (superseded, version_not_eligible) lets it join again when it matches.

// DevicesChanged re-examines devices whose registration changed (created,
// tags set), so that each joins the running dynamic tasks it now matches.
// The API calls it after the change is committed; the engine, as the only
// writer of jobs, adds them.
func (e *Engine) DevicesChanged(ctx context.Context, deviceIDs []int64) error {
	for chunk := range slices.Chunk(deviceIDs, e.cfg.BatchSize) {
		err := e.control(ctx, func(ctx context.Context) error { return e.joinChanged(ctx, chunk) })
		if err != nil {
			return err
		}
	}
	return nil
}

// joinChanged adds the given devices to the running dynamic tasks they
// match, awaiting their version when they have never reported one.
func (e *Engine) joinChanged(ctx context.Context, ids []int64) error {
	if len(e.dynamicTasks()) == 0 {
		return nil
	}
	devs, err := e.st.DevicesByID(ctx, ids)
	if err != nil {
		return err
	}
	active, err := e.st.ActiveJobs(ctx, ids)
	if err != nil {
		return err
	}
	w := e.newWork()
	w.addJobs(active)
	if err := w.loadDynamic(ctx, ids); err != nil {
		return err
	}
	for _, d := range devs {
		for _, module := range e.dynamicModules(d.Product) {
			if _, busy := w.active[jobRef{d.ID, module}]; !busy {
				w.joinDynamic(Device{ID: d.ID, Product: d.Product, Key: d.Key}, module, d.Versions[module])
			}
		}
	}
	return e.commit(ctx, w)
}

// dynamicTasks lists the running dynamic tasks, oldest first.
func (e *Engine) dynamicTasks() []*taskState {
	var out []*taskState
	for _, id := range e.sortedTaskIDs() {
		ts := e.tasks[id]
		if ts.task.Target.Dynamic && ts.task.State == ota.TaskRunning {
			out = append(out, ts)
		}
	}
	return out
}

// dynamicModules lists the modules the running dynamic tasks of a product
// upgrade.
func (e *Engine) dynamicModules(product string) []string {
	var out []string
	for _, ts := range e.dynamicTasks() {
		if ts.task.Product == product && !slices.Contains(out, ts.task.Module) {
			out = append(out, ts.task.Module)
		}
	}
	return out
}

// loadDynamic reads, when a dynamic task runs, the tags of the batch's
// devices and the dynamic tasks they already have jobs in.
func (w *work) loadDynamic(ctx context.Context, devices []int64) error {
	tasks := w.e.dynamicTasks()
	if len(tasks) == 0 {
		return nil
	}
	ids := make([]int64, len(tasks))
	for i, ts := range tasks {
		ids[i] = ts.task.ID
	}
	devices = slices.Compact(slices.Sorted(slices.Values(devices)))
	var err error
	if w.tags, err = w.e.st.DeviceTags(ctx, devices); err != nil {
		return fmt.Errorf("load device tags: %w", err)
	}
	if w.members, err = w.e.st.TaskMembers(ctx, ids, devices); err != nil {
		return fmt.Errorf("load dynamic task members: %w", err)
	}
	return nil
}

// joinDynamic adds a job for the device to the oldest running dynamic task
// it matches and is not yet part of: queued when its version is one the
// task upgrades from, awaiting the version when it has never reported one.
func (w *work) joinDynamic(d Device, module, version string) {
	ref := jobRef{d.ID, module}
	if w.joined[ref] {
		return
	}
	for _, ts := range w.e.dynamicTasks() {
		t := ts.task
		if t.Product != d.Product || t.Module != module || w.members[ota.TaskDevice{TaskID: t.ID, DeviceID: d.ID}] {
			continue
		}
		dev := ota.Device{Product: d.Product, Key: d.Key, Tags: w.tags[d.ID], Versions: map[string]string{module: version}}
		if !t.Target.Matches(dev, ts.firmware) && !t.Target.Awaits(dev, ts.firmware) {
			continue
		}
		w.joined[ref] = true
		w.change.NewJobs = append(w.change.NewJobs, ota.Job{
			TaskID: t.ID, DeviceID: d.ID, Device: d.Key, Product: d.Product, Module: module,
			State: newJobState(version), Attempt: 1, Phase: ota.PhaseIndex(max(0, len(t.Policy.Phases)-1)), FromVersion: version, Version: t.Version,
			CreatedAt: w.now, UpdatedAt: w.now,
		})
		return
	}
}
