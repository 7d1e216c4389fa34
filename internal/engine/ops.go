package engine

import (
	"context"
	"strconv"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// op is a unit of work for the loop: a device message (batched with other
// device messages into one transaction) or an operator action (run alone).
type op interface {
	done() <-chan error
	fail(error)
}

type result struct{ errc chan error }

func newResult() result             { return result{errc: make(chan error, 1)} }
func (r result) done() <-chan error { return r.errc }
func (r result) fail(err error)     { r.errc <- err }
func (r result) finish(err error)   { r.errc <- err }

type deviceOpKind int

const (
	opConnect deviceOpKind = iota
	opDisconnect
	opInform
	opRequest
	opConfirm
	opProgress
	opPoll
)

// deviceOp is one device message waiting for the loop.
type deviceOp struct {
	result
	kind     deviceOpKind
	dev      Device
	at       time.Time
	inform   wire.Inform
	request  wire.Request
	confirm  wire.Confirm
	progress wire.Progress
	jobID    int64 // parsed from confirm/progress

	// answer is set by the loop before done() fires.
	answer *Answer
}

// controlOp is an operator action run alone in the loop.
type controlOp struct {
	result
	fn func(ctx context.Context) error
}

// control runs fn in the loop and waits for it: operator actions change the
// loop's caches, so they must not race with it.
func (e *Engine) control(ctx context.Context, fn func(ctx context.Context) error) error {
	return e.submit(ctx, &controlOp{result: newResult(), fn: fn})
}

// Connected records that a device connected: it goes online, and push
// commands it missed while offline are sent again, once per connection
// (the broker holds what it sends to a connection until the device has
// subscribed).
func (e *Engine) Connected(ctx context.Context, d Device) error {
	_, err := e.device(ctx, &deviceOp{kind: opConnect, dev: d})
	return err
}

// Disconnected records that a device went offline.
func (e *Engine) Disconnected(ctx context.Context, d Device) error {
	_, err := e.device(ctx, &deviceOp{kind: opDisconnect, dev: d})
	return err
}

// Inform records the versions a device runs; a job waiting for its target
// version succeeds, one that sees its old version after a reboot fails as
// rolled back.
func (e *Engine) Inform(ctx context.Context, d Device, m wire.Inform) (*Answer, error) {
	return e.device(ctx, &deviceOp{kind: opInform, dev: d, inform: m})
}

// Request answers a device that asks for an upgrade: an offer when it is in
// a running task that may start it now, otherwise a reply saying why not.
func (e *Engine) Request(ctx context.Context, d Device, m wire.Request) (*Answer, error) {
	return e.device(ctx, &deviceOp{kind: opRequest, dev: d, request: m})
}

// Confirm records a device accepting or declining an upgrade.
func (e *Engine) Confirm(ctx context.Context, d Device, m wire.Confirm) (*Answer, error) {
	return e.device(ctx, &deviceOp{kind: opConfirm, dev: d, confirm: m, jobID: parseJobID(m.Job)})
}

// Poll answers a device that polls over HTTP for a pending upgrade: the
// command of its push job (started now when the policy allows), or nil. A
// poll counts as the device being seen.
func (e *Engine) Poll(ctx context.Context, d Device) (*Answer, error) {
	return e.device(ctx, &deviceOp{kind: opPoll, dev: d})
}

// Progress records how far a device has come with a job.
func (e *Engine) Progress(ctx context.Context, d Device, m wire.Progress) (*Answer, error) {
	return e.device(ctx, &deviceOp{kind: opProgress, dev: d, progress: m, jobID: parseJobID(m.Job)})
}

func (e *Engine) device(ctx context.Context, o *deviceOp) (*Answer, error) {
	o.result = newResult()
	o.at = e.now()
	if err := e.submit(ctx, o); err != nil {
		return nil, err
	}
	return o.answer, nil
}

// parseJobID reads the job id of a confirm or progress message; job ids are
// opaque strings on the wire and decimal numbers here. An id that is not
// one of ours (signed, empty, not decimal, beyond int64) is 0, which names
// no job: the loop answers unknown_job (and still counts the message as the
// device being seen).
func parseJobID(job string) int64 {
	id, err := strconv.ParseUint(job, 10, 63)
	if err != nil {
		return 0
	}
	return int64(id)
}

func unknownJob(to wire.Kind, job string) *Answer {
	return &Answer{Kind: wire.KindReply, Message: wire.Reply{
		To: to, Job: job, Error: wire.CodeUnknownJob,
		Message: "no job " + wire.Clip(job, 40) + " for this device",
	}}
}

// runOps runs a gathered batch: consecutive device messages share one
// transaction; operator actions run one at a time in order.
func (e *Engine) runOps(ctx context.Context, ops []op) {
	var devs []*deviceOp
	flush := func() {
		if len(devs) > 0 {
			e.runDeviceOps(ctx, devs)
			devs = nil
		}
	}
	for _, o := range ops {
		switch o := o.(type) {
		case *deviceOp:
			devs = append(devs, o)
		case *controlOp:
			flush()
			o.finish(o.fn(ctx))
		}
	}
	flush()
}

// jobRef is how a job is found for a device message.
type jobRef struct {
	device int64
	module string
}

func refOf(j ota.Job) jobRef { return jobRef{j.DeviceID, j.Module} }
