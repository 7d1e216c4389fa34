package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/otter-ota/otter/sdk/wire"
)

var (
	errJobCancelled = errors.New("the server cancelled the job")
	// errAlreadyRunning ends a job whose target version the module already
	// runs: it is reported by an inform, never installed again.
	errAlreadyRunning = errors.New("the module already runs the target version")
)

// declined ends a job the device said no to; answer is the Confirm that
// said it, repeated if the job comes again.
type declined struct{ answer wire.Confirm }

func (d *declined) Error() string {
	if d.answer.Message != "" {
		return "the upgrade was declined: " + d.answer.Message
	}
	return "the upgrade was declined"
}

// jobFailure ends a job with a failure code the server records.
type jobFailure struct {
	code string
	err  error
}

func (f *jobFailure) Error() string { return f.code + ": " + f.err.Error() }
func (f *jobFailure) Unwrap() error { return f.err }

func failure(code, format string, args ...any) *jobFailure {
	return &jobFailure{code: code, err: fmt.Errorf(format, args...)}
}

// handleUpgrade decides what a received upgrade message means: a cancel, a
// duplicate of a job this device has or had, another job while one runs,
// or a new job to start. Delivery is at least once, so the same message
// can come any number of times.
func (c *Client) handleUpgrade(up wire.Upgrade) {
	c.mu.Lock()
	kind := c.handleUpgradeLocked(up)
	c.mu.Unlock()
	if kind != "" { // emitted outside the lock: OnEvent may call the client
		c.emit(jobEvent(kind, up))
	}
}

func (c *Client) handleUpgradeLocked(up wire.Upgrade) EventKind {
	switch cur := c.st.Job; {
	case up.Cancel:
		return c.cancelLocked(up)
	case c.st.finished(up.Job, up.Attempt) != nil:
		c.repeatLocked(*c.st.finished(up.Job, up.Attempt))
		return EventDuplicate
	case cur != nil && cur.Upgrade.Job == up.Job:
		c.refreshURLLocked(up)
		return EventDuplicate
	case cur != nil:
		c.log.Info("an upgrade arrived while another runs; the server will send it again", "job", up.Job, "running", cur.Upgrade.Job)
		return EventBusy
	case c.runCtx == nil:
		return ""
	}
	c.log.Info("upgrade received", "job", up.Job, "module", up.Module, "version", up.Version, "mode", up.Mode)
	c.st.Job = &jobRecord{Upgrade: up, Phase: phasePending}
	c.saveLocked()
	c.startLocked()
	return EventUpgrade
}

// refreshURLLocked keeps the newest download URL of a job delivered again:
// the earlier one may have expired while the download waited.
func (c *Client) refreshURLLocked(up wire.Upgrade) {
	j := c.st.Job
	if j.Upgrade.URL != up.URL && (j.Phase == phasePending || j.Phase == phaseDownloading) {
		j.Upgrade.URL = up.URL
		c.saveLocked()
	}
}

// cancelLocked stops the job a cancel names, if it has not begun to
// install, and remembers the cancel so that a late copy of the command
// does not start the job.
func (c *Client) cancelLocked(up wire.Upgrade) EventKind {
	j := c.st.Job
	if j == nil || j.Upgrade.Job != up.Job {
		if c.st.finished(up.Job, up.Attempt) == nil {
			c.st.remember(doneRecord{Job: up.Job, Attempt: up.Attempt, Outcome: outcomeCancelled})
			c.saveLocked()
		}
		return ""
	}
	if j.Phase == phaseInstalling || j.Phase == phaseRebooting {
		c.log.Info("too late to cancel: the upgrade is installing", "job", up.Job)
		return ""
	}
	if c.cancel != nil {
		c.cancel(errJobCancelled) // the job's goroutine reports EventCancelled
		return ""
	}
	c.removePart(*j)
	c.finishLocked(doneRecord{Job: j.Upgrade.Job, Attempt: j.Upgrade.Attempt, Outcome: outcomeCancelled})
	return EventCancelled
}

// repeatLocked sends again the last answer of a finished job, for a server
// that sends the job again because it missed that answer.
func (c *Client) repeatLocked(d doneRecord) {
	var m wire.Message
	switch {
	case d.Answer != nil:
		m = *d.Answer
	case d.Decline != nil:
		m = *d.Decline
	case d.Outcome != outcomeSucceeded || c.runCtx == nil:
		return
	}
	ctx := c.runCtx
	c.jobs.Add(1)
	go func() {
		defer c.jobs.Done()
		var err error
		if m == nil {
			err = c.Inform(ctx)
		} else {
			err = c.sendReliably(ctx, m)
		}
		if err != nil && ctx.Err() == nil {
			c.fail(err, "repeat the answer to a job")
		}
	}()
}

// startLocked runs the current job in its own goroutine.
func (c *Client) startLocked() {
	ctx, cancel := context.WithCancelCause(c.runCtx)
	c.cancel = cancel
	c.jobs.Add(1)
	go func() {
		defer c.jobs.Done()
		defer cancel(nil)
		rec := c.current()
		c.settle(ctx, rec, c.execute(ctx, rec))
	}()
}

// resume continues, after a (re)connect, a job that no goroutine runs: one
// the state file kept across a restart.
func (c *Client) resume(ctx context.Context) {
	c.mu.Lock()
	j := c.st.Job
	if j == nil || c.cancel != nil {
		c.mu.Unlock()
		return
	}
	if j.Phase == phasePending || j.Phase == phaseDownloading || j.Phase == phaseConfirming {
		c.startLocked()
		c.mu.Unlock()
		return
	}
	rec := *j
	c.mu.Unlock()
	c.afterReboot(ctx, rec)
}

// execute carries the job from its recorded phase to the reboot. It
// returns nil only when Installer.Reboot returned.
func (c *Client) execute(ctx context.Context, rec jobRecord) error {
	up := rec.Upgrade
	if rec.Phase == phasePending {
		from, err := c.admit(ctx, up)
		if err != nil {
			return err
		}
		if err := c.confirm(ctx, up, up.Confirm || up.Mode == wire.ModeRequest, wire.StageDownload); err != nil {
			return err
		}
		c.update(func(j *jobRecord) { j.Phase, j.From = phaseDownloading, from })
	}
	path, err := c.download(ctx)
	if err != nil {
		return err
	}
	c.update(func(j *jobRecord) { j.Phase = phaseConfirming })
	c.report(ctx, wire.Progress{Job: up.Job, Attempt: up.Attempt, State: wire.StateDownloaded}, true)
	if err := c.confirm(ctx, up, up.ConfirmInstall, wire.StageInstall); err != nil {
		return err
	}
	if err := c.install(ctx, up, path); err != nil {
		return err
	}
	return c.reboot(ctx, up)
}

// admit runs the checks that need no download: both signatures, replay,
// the version the module runs and the downgrade floor. It records up as
// the newest command of its module and returns the module's current
// version.
func (c *Client) admit(ctx context.Context, up wire.Upgrade) (string, error) {
	if err := c.verifySignatures(up); err != nil {
		return "", err
	}
	versions, err := c.cfg.Installer.Versions(ctx)
	if err != nil {
		return "", failure(wire.FailInstall, "installer versions: %v", err)
	}
	cur := versions[up.Module]
	c.mu.Lock()
	defer c.mu.Unlock()
	resumed := c.st.Job != nil && c.st.Job.Admitted // a restart while confirming
	if !resumed && c.st.replayed(up) {
		last := c.st.Newest[up.Module]
		return "", failure(wire.FailReplayRefused, "job %s attempt %d of %s is not newer than job %s attempt %d, already admitted: a replayed command never installs again",
			up.Job, up.Attempt, up.Module, last.Job, last.Attempt)
	}
	c.st.admitted(up)
	if c.st.Job != nil {
		c.st.Job.Admitted = true
	}
	c.saveLocked()
	if cur != "" && wire.SameVersion(cur, up.Version) {
		return "", errAlreadyRunning
	}
	floor := c.st.Floor[up.Module]
	if !up.AllowDowngrade && (wire.IsDowngrade(cur, up.Version) || wire.IsDowngrade(floor, up.Version)) {
		return "", failure(wire.FailDowngradeRefused, "version %s is lower than the running %s or the highest version run, %s, and the signed command does not allow a downgrade",
			up.Version, cur, floor)
	}
	return cur, nil
}

// verifySignatures checks the firmware manifest and the signed command,
// which binds every other field of up (allow_downgrade, confirm, mode,
// params) to this device, job and attempt.
func (c *Client) verifySignatures(up wire.Upgrade) error {
	if !c.cfg.Manifests.verify(c.publicKey(), up.Manifest(c.cfg.Product), up.Signature) {
		return failure(wire.FailSignature, "the manifest signature of %s %s does not verify with the configured public key", up.Module, up.Version)
	}
	if !up.Command(c.cfg.Product, c.cfg.Device).Verify(c.publicKey(), up.CommandSignature) {
		return failure(wire.FailSignature, "the command signature of job %s does not verify: a field was changed in transit, or the command was made for another device", up.Job)
	}
	return nil
}

// confirm asks the local hook for the confirmation at stage when the
// upgrade needs it, and tells the server the answer.
func (c *Client) confirm(ctx context.Context, up wire.Upgrade, needed bool, stage wire.Stage) error {
	if !needed {
		return nil
	}
	accept, reason := c.ask(ctx, up, stage)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	m := wire.Confirm{Job: up.Job, Attempt: up.Attempt, Accept: accept}
	if stage == wire.StageInstall {
		m.Stage = stage
	}
	if !accept {
		m.Message = wire.Clip(reason, wire.MaxTextLength)
	}
	if err := c.sendReliably(ctx, m); err != nil {
		return err
	}
	e := jobEvent(EventConfirmed, up)
	e.Accept, e.Stage = accept, stage
	c.emit(e)
	if !accept {
		return &declined{answer: m}
	}
	return nil
}

// ask calls the hook of stage; a missing hook accepts.
func (c *Client) ask(ctx context.Context, up wire.Upgrade, stage wire.Stage) (bool, string) {
	if stage == wire.StageInstall {
		if c.cfg.ConfirmInstall == nil {
			return true, ""
		}
		return c.cfg.ConfirmInstall(ctx, up)
	}
	return c.cfg.Confirm == nil || c.cfg.Confirm(ctx, up), ""
}

// install hands the verified file to the Installer. From here on the job
// can no longer be cancelled.
func (c *Client) install(ctx context.Context, up wire.Upgrade, path string) error {
	c.update(func(j *jobRecord) { j.Phase = phaseInstalling })
	c.report(ctx, wire.Progress{Job: up.Job, Attempt: up.Attempt, State: wire.StateInstalling}, true)
	f, err := os.Open(path)
	if err != nil {
		return failure(wire.FailInstall, "open the downloaded file: %v", err)
	}
	defer f.Close()
	if err := c.cfg.Installer.Write(ctx, up, io.LimitReader(f, up.Size)); err != nil {
		return failure(wire.FailInstall, "write the image: %v", err)
	}
	if err := c.cfg.Installer.Activate(ctx, up); err != nil {
		return failure(wire.FailInstall, "activate the image: %v", err)
	}
	return nil
}

// reboot records that the device is rebooting, then reboots. When the
// Installer's Reboot returns, the client reports as after a restart.
func (c *Client) reboot(ctx context.Context, up wire.Upgrade) error {
	c.update(func(j *jobRecord) { j.Phase = phaseRebooting })
	c.report(ctx, wire.Progress{Job: up.Job, Attempt: up.Attempt, State: wire.StateRebooting}, true)
	c.removePart(c.current())
	if err := c.cfg.Installer.Reboot(ctx, up); err != nil {
		return failure(wire.FailInstall, "reboot: %v", err)
	}
	if err := c.Inform(ctx); err != nil {
		return err
	}
	c.afterReboot(ctx, c.current())
	return nil
}

// afterReboot ends a job that reached the installer: it succeeded if the
// module now runs the target version; otherwise the device rolled back
// (or restarted in the middle of installing).
func (c *Client) afterReboot(ctx context.Context, rec jobRecord) {
	up := rec.Upgrade
	versions, err := c.cfg.Installer.Versions(ctx)
	if err != nil {
		c.fail(err, "installer versions after the reboot")
		return
	}
	if got := versions[up.Module]; got == up.Version {
		c.log.Info("upgrade succeeded", "job", up.Job, "module", up.Module, "version", got)
		c.succeed(up)
		return
	}
	f := failure(wire.FailRolledBack, "after the reboot %s runs %s, not %s", up.Module, versions[up.Module], up.Version)
	if rec.Phase == phaseInstalling {
		f = failure(wire.FailInstall, "the device restarted while installing %s %s", up.Module, up.Version)
	}
	c.settle(ctx, rec, f)
}

// succeed ends the job as succeeded. A signed downgrade that ran lowers
// the module's floor to its version; any other success raises it.
func (c *Client) succeed(up wire.Upgrade) {
	c.mu.Lock()
	if up.AllowDowngrade {
		c.st.setFloor(up.Module, up.Version)
	} else {
		c.st.raiseFloor(up.Module, up.Version)
	}
	c.finishLocked(doneRecord{Job: up.Job, Attempt: up.Attempt, Outcome: outcomeSucceeded})
	c.mu.Unlock()
	c.emit(jobEvent(EventSucceeded, up))
}

// settle records how the job ended and tells the server.
func (c *Client) settle(ctx context.Context, rec jobRecord, err error) {
	up := rec.Upgrade
	var f *jobFailure
	var no *declined
	switch {
	case err == nil:
	case errors.Is(context.Cause(ctx), errJobCancelled):
		c.log.Info("upgrade cancelled by the server", "job", up.Job)
		c.removePart(rec)
		c.finish(doneRecord{Job: up.Job, Attempt: up.Attempt, Outcome: outcomeCancelled})
		c.emit(jobEvent(EventCancelled, up))
	case ctx.Err() != nil: // the client stops; the state file resumes the job
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
	case errors.As(err, &no):
		c.log.Info("upgrade declined", "job", up.Job, "stage", no.answer.Stage, "reason", no.answer.Message)
		c.removePart(rec) // a file declined after its download is dropped
		c.finish(doneRecord{Job: up.Job, Attempt: up.Attempt, Outcome: outcomeDeclined, Decline: &no.answer})
	case errors.Is(err, errAlreadyRunning):
		c.alreadyRunning(ctx, rec)
	case errors.As(err, &f):
		c.failJob(ctx, rec, f)
	default:
		c.failJob(ctx, rec, &jobFailure{code: wire.FailInstall, err: err})
	}
}

// alreadyRunning ends a command for the version the module runs without
// installing it again: the inform tells the server the job is done.
func (c *Client) alreadyRunning(ctx context.Context, rec jobRecord) {
	up := rec.Upgrade
	c.log.Info("the module already runs the target version; not installing it again", "job", up.Job, "version", up.Version)
	if err := c.Inform(ctx); err != nil && ctx.Err() == nil {
		c.fail(err, "inform")
	}
	c.succeed(up)
}

func (c *Client) failJob(ctx context.Context, rec jobRecord, f *jobFailure) {
	up := rec.Upgrade
	c.log.Warn("upgrade failed", "job", up.Job, "code", f.code, "err", f.err)
	p := wire.Progress{Job: up.Job, Attempt: up.Attempt, State: wire.StateFailed, Code: f.code, Message: wire.Clip(f.err.Error(), wire.MaxTextLength)}
	c.removePart(rec)
	c.finish(doneRecord{Job: up.Job, Attempt: up.Attempt, Outcome: outcomeFailed, Answer: &p})
	e := jobEvent(EventFailed, up)
	e.Code, e.Err = f.code, f.err
	c.emit(e)
	c.report(ctx, p, true)
}

// report sends a progress message. A reliable report is retried until the
// server takes it; the others (download percentages) are tried once, so
// that a slow link does not hold up the download.
func (c *Client) report(ctx context.Context, p wire.Progress, reliable bool) {
	e := Event{Kind: EventProgress, Job: p.Job, Attempt: p.Attempt, State: p.State, Percent: p.Percent, Code: p.Code}
	if reliable {
		if err := c.sendReliably(ctx, p); err != nil {
			if ctx.Err() == nil {
				c.fail(err, "report progress")
			}
			return
		}
		c.emit(e)
		return
	}
	tctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	if _, err := c.tr.send(tctx, p); err != nil {
		c.log.Debug("progress report dropped", "job", p.Job, "percent", p.Percent, "err", err)
		return
	}
	c.emit(e)
}

// current returns a copy of the current job record.
func (c *Client) current() jobRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Job == nil {
		return jobRecord{}
	}
	return *c.st.Job
}

// update changes the current job record and saves the state.
func (c *Client) update(f func(*jobRecord)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Job != nil {
		f(c.st.Job)
		c.saveLocked()
	}
}

func (c *Client) finish(d doneRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finishLocked(d)
}

func (c *Client) finishLocked(d doneRecord) {
	c.st.finish(d)
	c.cancel = nil
	c.saveLocked()
}

func (c *Client) saveLocked() {
	if err := saveState(c.cfg.StateFile, c.st); err != nil {
		c.log.Error("cannot save the state file; a restart now would lose the upgrade in progress", "err", err)
	}
}
