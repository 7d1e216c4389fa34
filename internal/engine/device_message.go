package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// runDeviceOps applies a batch of device messages in one transaction and
// answers each message only after the commit. A message that cannot be
// applied fails alone: messages of deleted devices are refused before
// anything is written, and a batch whose write fails anyway is written
// again one message at a time, so that the others are stored.
func (e *Engine) runDeviceOps(ctx context.Context, ops []*deviceOp) {
	ops, err := e.refuseDeleted(ctx, ops)
	if err != nil {
		e.failAll(ctx, ops, err)
		return
	}
	if len(ops) == 0 {
		return
	}
	err = e.applyDeviceOps(ctx, ops)
	if err == nil {
		return
	}
	if len(ops) == 1 || ctx.Err() != nil {
		e.failAll(ctx, ops, err)
		return
	}
	e.log.Warn("device messages not stored as a batch; storing them one by one", "count", len(ops), "err", err)
	for _, o := range ops {
		if err := e.applyDeviceOps(ctx, []*deviceOp{o}); err != nil {
			e.failAll(ctx, []*deviceOp{o}, err)
		}
	}
}

// applyDeviceOps handles and commits ops as one batch and answers them. On
// error nothing was written, nothing is answered, and the loop's budgets
// are as they were, so the ops can be applied again.
func (e *Engine) applyDeviceOps(ctx context.Context, ops []*deviceOp) error {
	saved := e.saveBudgets()
	w, err := e.loadWork(ctx, ops)
	if err == nil {
		for _, o := range ops {
			w.handle(o)
		}
		err = e.commit(ctx, w)
	}
	if err != nil {
		e.restoreBudgets(saved)
		return err
	}
	for _, o := range ops {
		o.finish(nil)
	}
	e.metrics.deviceMessages.Add(float64(len(ops)))
	e.reverify(ctx, w.late)
	return nil
}

// errDeviceDeleted answers a message of a device deleted after it logged in.
var errDeviceDeleted = &wire.Error{Code: wire.CodeUnauthorized,
	Message: "this device no longer exists: it was deleted"}

// refuseDeleted answers the ops of devices that no longer exist as
// unauthorized and returns the others. Devices are deleted only in the
// loop, so a device found here still exists when the batch is written, and
// one the loop knows (knownDevice: deletions take it out) needs no
// reading.
func (e *Engine) refuseDeleted(ctx context.Context, ops []*deviceOp) ([]*deviceOp, error) {
	ids := make([]int64, 0, len(ops))
	for _, o := range ops {
		if !e.knownDevice(o.dev.ID) {
			ids = append(ids, o.dev.ID)
		}
	}
	if len(ids) == 0 {
		return ops, nil
	}
	slices.Sort(ids)
	exists, err := e.st.ExistingDevices(ctx, slices.Compact(ids))
	if err != nil {
		return ops, fmt.Errorf("check devices: %w", err)
	}
	kept := ops[:0:0]
	for _, o := range ops {
		if e.knownDevice(o.dev.ID) || exists[o.dev.ID] {
			kept = append(kept, o)
		} else {
			o.fail(errDeviceDeleted)
		}
	}
	return kept, nil
}

// knownDevice says whether the loop knows the device exists without
// reading it: it wrote to it in the last seconds (e.seen), or holds its
// active jobs (e.devJobs: read for a device that existed, by a batch past
// this check or by a task's creation from its candidates). Devices are
// deleted only by the loop, which forgets both as it deletes one.
func (e *Engine) knownDevice(id int64) bool {
	if _, ok := e.seen[id]; ok {
		return true
	}
	_, ok := e.devJobs[id]
	return ok
}

// budgetState is what handling a device message may spend of a task's
// budget before the batch is written.
type budgetState struct {
	budget int
	bucket ota.RateBucket
}

func (e *Engine) saveBudgets() map[int64]budgetState {
	out := make(map[int64]budgetState, len(e.tasks))
	for id, ts := range e.tasks {
		out[id] = budgetState{ts.budget, ts.book.Bucket}
	}
	return out
}

func (e *Engine) restoreBudgets(saved map[int64]budgetState) {
	for id, b := range saved {
		if ts := e.tasks[id]; ts != nil {
			ts.budget, ts.book.Bucket = b.budget, b.bucket
		}
	}
}

func (e *Engine) failAll(ctx context.Context, ops []*deviceOp, err error) {
	if ctx.Err() == nil {
		e.log.Error("device messages not stored", "count", len(ops), "err", err)
	}
	for _, o := range ops {
		o.answer = nil
		o.fail(ota.Errorf(ota.EUNAVAILABLE, "the server could not store the message: try again"))
	}
}

// loadWork reads, in two queries, every job the batch can touch: the active
// jobs of its devices and the jobs its messages name.
func (e *Engine) loadWork(ctx context.Context, ops []*deviceOp) (*work, error) {
	w := e.newWork()
	devices := make([]int64, 0, len(ops))
	var named, polling []int64
	for _, o := range ops {
		devices = append(devices, o.dev.ID)
		if o.jobID != 0 {
			named = append(named, o.jobID)
		}
		if o.kind == opPoll {
			polling = append(polling, o.dev.ID)
		}
	}
	if err := w.loadLast(ctx, polling); err != nil {
		return nil, err
	}
	slices.Sort(devices)
	if err := e.activeJobs(ctx, slices.Compact(devices), w.addJobs); err != nil {
		return nil, err
	}
	if err := w.loadEnded(ctx, ops); err != nil {
		return nil, err
	}
	if err := w.loadDynamic(ctx, devices); err != nil {
		return nil, err
	}
	var missing []int64
	for _, id := range named {
		if _, ok := w.jobs[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		more, err := e.st.JobsByID(ctx, missing)
		if err != nil {
			return nil, fmt.Errorf("load jobs: %w", err)
		}
		w.addJobs(more)
	}
	return w, nil
}

// loadEnded reads the latest failed or timed-out jobs of the devices that
// report the version of a module they have no active job on: a report of
// the target version settles such a job late.
func (w *work) loadEnded(ctx context.Context, ops []*deviceOp) error {
	var informers []int64
	for _, o := range ops {
		if o.kind != opInform {
			continue
		}
		for module := range o.inform.Modules {
			if _, ok := w.active[jobRef{o.dev.ID, module}]; !ok {
				informers = append(informers, o.dev.ID)
				break
			}
		}
	}
	if len(informers) == 0 {
		return nil
	}
	slices.Sort(informers)
	ended, err := w.e.st.LatestEndedJobs(ctx, slices.Compact(informers))
	if err != nil {
		return fmt.Errorf("load ended jobs: %w", err)
	}
	w.addJobs(ended)
	for _, j := range ended {
		w.ended[refOf(j)] = j.ID
	}
	return nil
}

// handle applies one device message to the batch's view of the jobs.
func (w *work) handle(o *deviceOp) {
	if o.kind != opConnect && o.kind != opDisconnect {
		w.seen(o.dev.ID, o.at)
	}
	switch o.kind {
	case opConnect, opDisconnect:
		w.presence(o)
	case opInform:
		w.inform(o)
	case opRequest:
		w.request(o)
	case opPoll:
		w.poll(o)
	case opConfirm:
		c := o.confirm
		w.jobMessage(o, ota.JobInput{Kind: ota.JobConfirm, Accept: c.Accept, Install: c.Stage == wire.StageInstall, Message: c.Message},
			wire.KindConfirm, c.Job, c.Attempt)
	case opProgress:
		p := o.progress
		w.jobMessage(o, ota.JobInput{
			Kind: ota.JobProgress, State: ota.JobState(p.State), Percent: p.Percent,
			Code: p.Code, Message: p.Message,
		}, wire.KindProgress, p.Job, p.Attempt)
	}
}

// presence records a connect or disconnect. A connected device is sent
// the commands it may have missed while away, and its queued push jobs may
// start.
func (w *work) presence(o *deviceOp) {
	online := o.kind == opConnect
	w.heardPending(o.dev.ID)
	w.change.Presence = append(w.change.Presence, ota.Presence{DeviceID: o.dev.ID, Online: online, At: o.at})
	if !online {
		return
	}
	for _, j := range w.activeOf(o.dev.ID) {
		ts := w.e.tasks[j.TaskID]
		if ts == nil || ts.task.Mode != ota.ModePush {
			continue
		}
		switch {
		case j.State.CommandPending():
			// The command may have been sent while the device was away, or
			// the device may have lost it with its power.
			w.send(o.dev, j, ts)
		case j.State == ota.JobQueued && ts.task.State == ota.TaskRunning:
			ts.wantSweep = true
			w.e.poke()
		}
	}
}

func (w *work) inform(o *deviceOp) {
	for module, version := range o.inform.Modules {
		w.change.Versions = append(w.change.Versions, ota.VersionReport{
			DeviceID: o.dev.ID, Module: module, Version: version, At: o.at,
		})
		if id, ok := w.active[jobRef{o.dev.ID, module}]; ok {
			w.reportVersion(id, version, "device")
		} else if id, ok := w.ended[jobRef{o.dev.ID, module}]; ok {
			w.lateSuccess(id, version)
		}
		if _, busy := w.active[jobRef{o.dev.ID, module}]; !busy {
			w.joinDynamic(o.dev, module, version)
		}
	}
}

// reportVersion applies a device's version report to its active job: a job
// awaiting the version is queued, succeeds or ends as not eligible; a job
// in flight may succeed, roll back or be superseded.
func (w *work) reportVersion(id int64, version, actor string) {
	j := w.jobs[id]
	eligible := false
	if ts := w.e.tasks[j.TaskID]; ts != nil {
		eligible = ts.task.Target.UpgradesFrom(version, ts.firmware)
	}
	w.transition(id, ota.JobInput{Kind: ota.JobInform, Version: version, Eligible: eligible}, actor)
	w.supersede(id, version)
}

// lateSuccess records that the device of a failed or timed-out job runs its
// target version after all; a verification task may then prove its
// firmware.
func (w *work) lateSuccess(id int64, version string) {
	if w.transition(id, ota.JobInput{Kind: ota.JobInform, Version: version}, "device") {
		w.late[w.jobs[id].TaskID] = true
	}
}

// supersede cancels a job that has not started installing when the device
// reports a version the firmware does not upgrade from: it got there some
// other way, and the job would now downgrade it or reinstall.
func (w *work) supersede(id int64, version string) {
	j := w.jobs[id]
	ts := w.e.tasks[j.TaskID]
	if j.State.Terminal() || j.State.Stage() >= ota.JobInstalling.Stage() || ts == nil || ts.firmware.UpgradesFrom(version) {
		return
	}
	msg := fmt.Sprintf("the device reports version %s, which this firmware does not upgrade from", version)
	sent := j.State != ota.JobQueued
	if w.transition(id, ota.JobInput{Kind: ota.JobCancel, Code: ota.CodeSuperseded, Message: msg}, "engine") && sent {
		w.sendCancel(*w.jobs[id])
	}
}

// request answers "is there an upgrade for me?".
func (w *work) request(o *deviceOp) {
	module := o.request.Module
	if module == "" {
		module = ota.DefaultModule
	}
	if v := o.request.Version; v != "" {
		w.change.Versions = append(w.change.Versions, ota.VersionReport{DeviceID: o.dev.ID, Module: module, Version: v, At: o.at})
	}
	id, ts := w.requestedJob(o.dev.ID, module, o.request.Version)
	if ts == nil {
		o.answer = noUpgrade(module, "no running task has an upgrade of module "+module+" for this device")
		return
	}
	j := w.jobs[id]
	if j.State == ota.JobAwaitingVersion {
		o.answer = noUpgrade(module, "report the version of module "+module+" first (inform, or version in this request): the upgrade planned for this device depends on it")
		return
	}
	if j.State == ota.JobQueued {
		if wait, ok := ts.admit(j, o.at); !ok {
			o.answer = &Answer{Kind: wire.KindReply, Message: wire.Reply{
				To: wire.KindRequest, Module: module, Error: wire.CodeNoUpgrade,
				Message:    "an upgrade is planned for this device but the rollout is paced: ask again later",
				RetryAfter: int(wait.Seconds()) + 1,
			}}
			return
		}
		kind := ota.JobOffer
		if ts.task.Mode == ota.ModePush {
			kind = ota.JobNotify
		}
		w.transition(id, ota.JobInput{Kind: kind}, "engine")
		j = w.jobs[id]
	}
	o.answer = &Answer{Kind: wire.KindUpgrade, Message: w.e.signed(o.dev.Product, o.dev.Key, w.e.upgradeMessage(o.dev, *j, ts))}
}

// requestedJob finds the device's job on module in a running task, settled
// first when it awaited the version the request gives.
func (w *work) requestedJob(device int64, module, version string) (int64, *taskState) {
	id, ok := w.active[jobRef{device, module}]
	if ok && version != "" && w.jobs[id].State == ota.JobAwaitingVersion {
		w.reportVersion(id, version, "device")
		id, ok = w.active[jobRef{device, module}]
	}
	if !ok {
		return 0, nil
	}
	ts := w.e.tasks[w.jobs[id].TaskID]
	if ts == nil || ts.task.State != ota.TaskRunning {
		return 0, nil
	}
	return id, ts
}

// poll gives an HTTP device what a connected MQTT device would have been
// sent: the command of its push job while the device may still need it
// (starting a queued job when the task's policy admits it now), or else the
// cancel of its last job if that job was cancelled after it was sent.
func (w *work) poll(o *deviceOp) {
	for _, j := range w.activeOf(o.dev.ID) {
		ts := w.e.tasks[j.TaskID]
		if ts == nil || ts.task.Mode != ota.ModePush {
			continue
		}
		if j.State == ota.JobQueued {
			if ts.task.State != ota.TaskRunning {
				continue
			}
			if _, ok := ts.admit(&j, o.at); !ok {
				continue
			}
			w.transition(j.ID, ota.JobInput{Kind: ota.JobNotify}, "engine")
			j = *w.jobs[j.ID]
		}
		if j.State.CommandPending() {
			o.answer = &Answer{Kind: wire.KindUpgrade, Message: w.e.signed(o.dev.Product, o.dev.Key, w.e.upgradeMessage(o.dev, j, ts))}
			return
		}
	}
	for _, j := range w.last[o.dev.ID] {
		if j.State == ota.JobCancelled && j.SentAt != nil {
			o.answer = &Answer{Kind: wire.KindUpgrade, Message: wire.CancelUpgrade(strconv.FormatInt(j.ID, 10), j.Attempt)}
			return
		}
	}
}

// loadLast reads the newest job of each module of the polling devices.
func (w *work) loadLast(ctx context.Context, devices []int64) error {
	if len(devices) == 0 {
		return nil
	}
	slices.Sort(devices)
	jobs, err := w.e.st.LastJobs(ctx, slices.Compact(devices))
	if err != nil {
		return fmt.Errorf("load last jobs: %w", err)
	}
	w.last = make(map[int64][]ota.Job, len(devices))
	for _, j := range jobs {
		w.last[j.DeviceID] = append(w.last[j.DeviceID], j)
	}
	return nil
}

// jobMessage applies a confirm or progress message to the job it names.
func (w *work) jobMessage(o *deviceOp, in ota.JobInput, to wire.Kind, job string, attempt int) {
	j, ok := w.jobs[o.jobID]
	if !ok || j.DeviceID != o.dev.ID {
		o.answer = unknownJob(to, job)
		return
	}
	if attempt != 0 && attempt != j.Attempt {
		return // a late message about an earlier attempt of a retried job
	}
	if j.State == ota.JobCancelled {
		// Tell the device again: it may have missed the cancel (an HTTP
		// device hears it in a poll or in answers like this one).
		o.answer = &Answer{Kind: wire.KindUpgrade, Message: wire.CancelUpgrade(job, j.Attempt)}
		return
	}
	if ts := w.e.tasks[j.TaskID]; ts != nil {
		in.ConfirmInstall = ts.task.Policy.Confirm.BeforeInstall()
	}
	w.transition(j.ID, in, "device")
}

func noUpgrade(module, msg string) *Answer {
	return &Answer{Kind: wire.KindReply, Message: wire.Reply{
		To: wire.KindRequest, Module: module, Error: wire.CodeNoUpgrade, Message: msg,
	}}
}

// upgradeMessage is the command (push) or offer (request) for a job,
// before its command signature (signed adds it).
func (e *Engine) upgradeMessage(d Device, j ota.Job, ts *taskState) wire.Upgrade {
	fw := ts.firmware
	mode := wire.ModePush
	if ts.task.Mode == ota.ModeRequest {
		mode = wire.ModeRequest
	}
	confirm := ts.task.Policy.Confirm
	up := wire.Upgrade{
		Job:            strconv.FormatInt(j.ID, 10),
		Attempt:        j.Attempt,
		Module:         fw.Module,
		Version:        fw.Version,
		Size:           fw.Size,
		SHA256:         fw.SHA256,
		Signature:      fw.Signature,
		URL:            e.urls.DownloadURL(d.Product, d.Key, fw.ID),
		Confirm:        confirm.BeforeDownload() || mode == wire.ModeRequest,
		ConfirmInstall: confirm.BeforeInstall(),
		Mode:           mode,
		Params:         fw.Params,
		AllowDowngrade: fw.AllowDowngrade,
	}
	return up
}

// signed adds the command signature for device key of product to up (see
// wire.Command).
func (e *Engine) signed(product, key string, up wire.Upgrade) wire.Upgrade {
	if e.cfg.Commands != nil && !up.Cancel {
		up.CommandSignature = e.cfg.Commands.SignCommand(up.Command(product, key))
	}
	return up
}

// signSends signs the upgrade commands of a batch, on every core when the
// batch is large: one ed25519 signature costs tens of microseconds, so a
// thousand commands would hold the one writer for a core's 25 ms.
func (e *Engine) signSends(sends []outgoing) {
	workers := min(runtime.GOMAXPROCS(0), max(1, len(sends)/64))
	var wg sync.WaitGroup
	for n := range workers {
		wg.Go(func() {
			for i := n; i < len(sends); i += workers {
				if up, ok := sends[i].msg.(wire.Upgrade); ok {
					sends[i].msg = e.signed(sends[i].product, sends[i].device, up)
				}
			}
		})
	}
	wg.Wait()
}
