package server

import (
	"context"
	"encoding/json"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// The methods of engineRef hand each call to the current engine.

func (r *engineRef) CreateTask(ctx context.Context, spec ota.TaskSpec) (ota.Task, error) {
	e, err := r.get()
	if err != nil {
		return ota.Task{}, err
	}
	return e.CreateTask(ctx, spec)
}

func (r *engineRef) Plan(ctx context.Context, spec ota.TaskSpec) (engine.Preview, error) {
	e, err := r.get()
	if err != nil {
		return engine.Preview{}, err
	}
	return e.Plan(ctx, spec)
}

func (r *engineRef) task(ctx context.Context, id int64, f func(*engine.Engine, context.Context, int64) (ota.Task, error)) (ota.Task, error) {
	e, err := r.get()
	if err != nil {
		return ota.Task{}, err
	}
	return f(e, ctx, id)
}

func (r *engineRef) Pause(ctx context.Context, id int64) (ota.Task, error) {
	return r.task(ctx, id, (*engine.Engine).Pause)
}

func (r *engineRef) Resume(ctx context.Context, id int64) (ota.Task, error) {
	return r.task(ctx, id, (*engine.Engine).Resume)
}

func (r *engineRef) Cancel(ctx context.Context, id int64) (ota.Task, error) {
	return r.task(ctx, id, (*engine.Engine).Cancel)
}

func (r *engineRef) Advance(ctx context.Context, id int64) (ota.Task, error) {
	return r.task(ctx, id, (*engine.Engine).Advance)
}

func (r *engineRef) RetryFailed(ctx context.Context, id int64) (ota.Task, int, error) {
	e, err := r.get()
	if err != nil {
		return ota.Task{}, 0, err
	}
	return e.RetryFailed(ctx, id)
}

func (r *engineRef) UpdatePolicy(ctx context.Context, id int64, patch map[string]json.RawMessage) (ota.Task, error) {
	e, err := r.get()
	if err != nil {
		return ota.Task{}, err
	}
	return e.UpdatePolicy(ctx, id, patch)
}

func (r *engineRef) RetryFailedDevices(ctx context.Context, id int64, devices []string) (ota.Task, int, error) {
	e, err := r.get()
	if err != nil {
		return ota.Task{}, 0, err
	}
	return e.RetryFailedDevices(ctx, id, devices)
}

func (r *engineRef) CancelDevices(ctx context.Context, id int64, devices []string) (ota.Task, int, error) {
	e, err := r.get()
	if err != nil {
		return ota.Task{}, 0, err
	}
	return e.CancelDevices(ctx, id, devices)
}

func (r *engineRef) DevicesChanged(ctx context.Context, ids []int64) error {
	e, err := r.get()
	if err != nil {
		return err
	}
	return e.DevicesChanged(ctx, ids)
}

func (r *engineRef) DeleteDevice(ctx context.Context, product, key string) error {
	e, err := r.get()
	if err != nil {
		return err
	}
	return e.DeleteDevice(ctx, product, key)
}

// Waiting is nil on a replica that does not schedule: what a task waits for
// lives in the engine's memory.
func (r *engineRef) Waiting(id int64) *ota.Waiting {
	e, err := r.get()
	if err != nil {
		return nil
	}
	return e.Waiting(id)
}

func (r *engineRef) Connected(ctx context.Context, d engine.Device) error {
	e, err := r.get()
	if err != nil {
		return err
	}
	return e.Connected(ctx, d)
}

func (r *engineRef) Disconnected(ctx context.Context, d engine.Device) error {
	e, err := r.get()
	if err != nil {
		return err
	}
	return e.Disconnected(ctx, d)
}

func (r *engineRef) answer(f func(*engine.Engine) (*engine.Answer, error)) (*engine.Answer, error) {
	e, err := r.get()
	if err != nil {
		return nil, err
	}
	return f(e)
}

func (r *engineRef) Inform(ctx context.Context, d engine.Device, m wire.Inform) (*engine.Answer, error) {
	return r.answer(func(e *engine.Engine) (*engine.Answer, error) { return e.Inform(ctx, d, m) })
}

func (r *engineRef) Request(ctx context.Context, d engine.Device, m wire.Request) (*engine.Answer, error) {
	return r.answer(func(e *engine.Engine) (*engine.Answer, error) { return e.Request(ctx, d, m) })
}

func (r *engineRef) Confirm(ctx context.Context, d engine.Device, m wire.Confirm) (*engine.Answer, error) {
	return r.answer(func(e *engine.Engine) (*engine.Answer, error) { return e.Confirm(ctx, d, m) })
}

func (r *engineRef) Progress(ctx context.Context, d engine.Device, m wire.Progress) (*engine.Answer, error) {
	return r.answer(func(e *engine.Engine) (*engine.Answer, error) { return e.Progress(ctx, d, m) })
}

func (r *engineRef) Poll(ctx context.Context, d engine.Device) (*engine.Answer, error) {
	return r.answer(func(e *engine.Engine) (*engine.Answer, error) { return e.Poll(ctx, d) })
}
