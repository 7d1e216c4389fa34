package engine

import (
	"context"

	"github.com/otter-ota/otter/internal/ota"
)

// Device registry changes that touch jobs go through the loop, the only
// writer of jobs, so that the loop's counts stay exact.

// DeleteDevice deletes a device and cancels its active jobs (code
// device_deleted) in one transaction: its tasks complete without it, and
// a crash can never leave a deleted device with a job that waits forever.
// Messages of the device that reach the loop afterwards are refused as
// unauthorized.
func (e *Engine) DeleteDevice(ctx context.Context, product, key string) error {
	actor := ota.ActorFrom(ctx)
	return e.control(ctx, func(ctx context.Context) error {
		c, err := e.st.Credentials(ctx, product, key)
		if err != nil {
			return err
		}
		jobs, err := e.st.ActiveJobs(ctx, []int64{c.DeviceID})
		if err != nil {
			return err
		}
		w := e.newWork()
		w.cancelDeleted(jobs, actor)
		w.change.DeleteDevices = []int64{c.DeviceID}
		w.change.Events = append(w.change.Events, ota.Event{
			At: w.now, Actor: actor, Kind: ota.KindDevice, Action: "deleted", Product: product, Device: key,
		})
		return e.commit(ctx, w)
	})
}

// cancelOrphans cancels the active jobs of devices deleted before deletion
// cancelled them (by an older version): run at start, before any message.
func (e *Engine) cancelOrphans(ctx context.Context) error {
	for {
		jobs, err := e.st.OrphanJobs(ctx, e.cfg.BatchSize)
		if err != nil || len(jobs) == 0 {
			return err
		}
		w := e.newWork()
		w.cancelDeleted(jobs, "engine")
		if err := e.commit(ctx, w); err != nil {
			return err
		}
		if len(jobs) < e.cfg.BatchSize {
			return nil
		}
	}
}

// cancelDeleted cancels jobs whose device is deleted. Nothing is sent: the
// device has no session left to hear it.
func (w *work) cancelDeleted(jobs []ota.Job, actor string) {
	w.addJobs(jobs)
	for _, j := range jobs {
		w.transition(j.ID, ota.JobInput{Kind: ota.JobCancel, Code: ota.CodeDeviceDeleted,
			Message: "the device was deleted"}, actor)
	}
}
