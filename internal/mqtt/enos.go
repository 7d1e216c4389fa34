package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/enos"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// This file is the broker's side of EnOS's device protocol
// (docs/protocol-enos.md): the login, the OTA topics under
// /sys/{product}/{device}/, and their mapping onto the engine's device
// calls. The codec is internal/enos.

// DefaultEnOSClockSkew is how far an EnOS login's timestamp may be from the
// server's clock, either way. The signed timestamp is all that stops a
// recorded login from being replayed later; devices without a
// battery-backed clock may be minutes off.
const DefaultEnOSClockSkew = time.Hour

// speaksEnOS reports whether a client logged in with EnOS's protocol.
func speaksEnOS(cl *mochi.Client) bool {
	c, ok := connOf(cl)
	return ok && c.enos.Load()
}

// checkEnOS checks an EnOS static login: the timestamp within the skew,
// a device of an EnOS product with a sealed secret, and the signature.
func (b *Broker) checkEnOS(l enos.Login, pk packets.Packet) (*engine.Device, *refusal) {
	user := wire.Username(l.Product, l.Device)
	at, _ := l.Time() // ParseLogin checked it
	if skew := time.Since(at); skew > b.cfg.EnOSClockSkew || skew < -b.cfg.EnOSClockSkew {
		return nil, enosRefusal(refusedClock, fmt.Sprintf("the login's timestamp is more than %s from the server's clock: set the device's clock", b.cfg.EnOSClockSkew),
			fmt.Errorf("device %s: EnOS login timestamp %s is %s from the server's clock (allowed: %s)", user, at.UTC().Format(time.RFC3339), time.Since(at).Round(time.Second), b.cfg.EnOSClockSkew))
	}
	creds, r := b.lookup(l.Product, l.Device)
	if r != nil {
		return nil, r
	}
	if creds.Protocol != ota.ProtocolEnOS {
		return nil, enosRefusal(refusedNotEnOS, "this product does not take EnOS logins: switch it with otter product update --protocol enos",
			fmt.Errorf("device %s: EnOS login, but the product's protocol is %s", user, creds.Protocol))
	}
	if creds.SealedSecret == nil {
		return nil, enosRefusal(refusedNoSealed, "this device's secret predates the product's switch to EnOS: rotate it (otter device rotate-secret)",
			fmt.Errorf("device %s: EnOS login, but the server has no sealed secret for it (created before the product took EnOS logins): rotate its secret", user))
	}
	if b.cfg.Secrets == nil {
		return nil, &refusal{reason: refusedUnavailable, v5: v5Unavailable, v3: v3Unavailable,
			text: "server unavailable: connect again later", err: fmt.Errorf("device %s: EnOS login, but the broker has no secret box", user)}
	}
	secret, err := b.cfg.Secrets.Open(l.Product, l.Device, creds.SealedSecret)
	if err != nil {
		return nil, enosRefusal(refusedNoSealed, "this device's secret cannot be read by the server: rotate it (otter device rotate-secret)",
			fmt.Errorf("device %s: %w (was the signing key replaced?): rotate its secret", user, err))
	}
	if !pk.Connect.PasswordFlag || !l.Verify(string(pk.Connect.Password), secret) {
		return nil, enosRefusal(refusedSignature, "bad user name or password: the password must be the login's signature with the device secret",
			fmt.Errorf("device %s: wrong EnOS signature (%s)", user, l.SignMethod))
	}
	return &engine.Device{ID: creds.DeviceID, Product: l.Product, Key: l.Device}, nil
}

func enosRefusal(reason, text string, err error) *refusal {
	return &refusal{reason: reason, v5: v5BadCredentials, v3: v3BadCredentials, text: text, err: err}
}

// subscribeEnOS subscribes an EnOS connection, for the device, to its own
// /sys/{product}/{device}/ tree: EnOS's SDKs never subscribe to their
// command topics (the broker is expected to deliver them), and subscribe
// to a reply topic only with their first request.
func (b *Broker) subscribeEnOS(c *conn, cl *mochi.Client, d *engine.Device) {
	sub := packets.Subscription{Filter: enos.Tree(d.Product, d.Key) + "#", Qos: 1}
	cl.State.Subscriptions.Add(sub.Filter, sub)
	b.srv.Topics.Subscribe(cl.ID, sub)
	c.receiving = true
	c.receive() // otter-form commands held since the CONNECT: the engine sends them again at Connected
}

// enosCommand is the last upgrade an EnOS device was sent or offered: its
// progress reports name no job, so they apply to this one.
type enosCommand struct {
	job     string
	attempt int
	confirm bool // its first progress report is the device's confirmation
}

// enosJobs keeps each EnOS device's last command, by device name. A
// restarted server learns them again: the engine sends a push job's
// command again at connect, and a report of a device it knows nothing of
// asks the engine (Request) for the device's job.
type enosJobs struct {
	mu     sync.Mutex
	byName map[string]enosCommand
}

func newEnOSJobs() *enosJobs { return &enosJobs{byName: map[string]enosCommand{}} }

func (j *enosJobs) get(name string) (enosCommand, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	c, ok := j.byName[name]
	return c, ok
}

func (j *enosJobs) set(name string, c enosCommand) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.byName[name] = c
}

// confirmed records that the device's confirmation of job was sent.
func (j *enosJobs) confirmed(name, job string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if c, ok := j.byName[name]; ok && c.job == job {
		c.confirm = false
		j.byName[name] = c
	}
}

func commandOf(up wire.Upgrade) enosCommand {
	return enosCommand{job: up.Job, attempt: up.Attempt, confirm: up.Confirm || up.Mode == wire.ModeRequest}
}

// firmwareOf is an upgrade in EnOS's fields. otter keeps a firmware's
// SHA-256 only, so the sign method is always sha256.
func firmwareOf(up wire.Upgrade) enos.Firmware {
	return enos.Firmware{Version: up.Version, Sign: up.SHA256, SignMethod: "sha256", FileURL: up.URL, FileSize: up.Size}
}

// sendEnOSUpgrade publishes an upgrade command, in EnOS's form, on the
// EnOS upgrade topic of a device that has an EnOS connection. A cancel has
// no EnOS form: the device is not told (docs/protocol-enos.md).
func (b *Broker) sendEnOSUpgrade(product, device string, payload []byte) {
	up, err := wire.DecodeUpgrade(payload)
	if err != nil {
		b.log.Error("mqtt: upgrade command not readable for EnOS; not sent", "product", product, "device", device, "err", err)
		return
	}
	if up.Cancel || up.Module != ota.DefaultModule {
		return // EnOS devices have one module and no cancel
	}
	b.enos.set(wire.Username(product, device), commandOf(up))
	b.publishEnOS(enos.Topic(product, device, enos.KindUpgrade), enos.Upgrade(up.Job, firmwareOf(up)))
}

func (b *Broker) publishEnOS(topic string, payload []byte) {
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		b.log.Warn("mqtt: publish EnOS downlink", "topic", topic, "err", err)
		return
	}
	b.metrics.downlinks.WithLabelValues(enosLabel(topic)).Inc()
}

// enosLabel names an EnOS topic in a metric label: "enos_" and its last
// level, from a fixed set.
func enosLabel(topic string) string {
	_, _, k, err := enos.ParseTopic(strings.TrimSuffix(topic, "_reply"))
	if err != nil || k == enos.KindOther {
		return "enos_other"
	}
	suffix := ""
	if strings.HasSuffix(topic, "_reply") {
		suffix = "_reply"
	}
	return "enos_" + strings.TrimPrefix(string(k), "ota/device/") + suffix
}

// errNoEnOSJob answers a progress report of a device with no upgrade in
// flight.
var errNoEnOSJob = &wire.Error{Code: wire.CodeUnknownJob, Message: "no upgrade is in progress for this device"}

// enosUplink handles a message an EnOS connection publishes in its EnOS
// tree, like uplink does otter's: the engine stores it before mochi
// acknowledges it, and the reply (EnOS's envelope, on the topic's _reply
// topic) is published after.
func (b *Broker) enosUplink(c *conn, cl *mochi.Client, d *engine.Device, pk packets.Packet) error {
	start := time.Now()
	topic := pk.TopicName
	_, _, kind, err := enos.ParseTopic(topic)
	switch {
	case err != nil || kind == enos.KindOther || kind == enos.KindUpgrade:
		b.metrics.uplinkErrors.WithLabelValues(wire.CodeUnknownTopic).Inc()
		if !strings.HasSuffix(topic, "_reply") && kind != enos.KindUpgrade { // a device's own command topic gets no answer
			c.after = func() {
				b.publishEnOS(enos.ReplyTopic(topic), enos.Reply(requestID(pk.Payload), enos.CodeNotSupported, nil,
					"otter implements only the OTA topics of EnOS's device protocol (ota/device/inform, progress, getversion, request)"))
			}
		}
		return errIgnore
	case kind == enos.KindUpgradeReply:
		b.upgradeReply(c, d, pk.Payload)
		return errIgnore
	}
	req, err := enos.DecodeRequest(pk.Payload)
	var data any
	if err != nil {
		// The device's mistake, not the server's: answered 460 and
		// acknowledged, rather than resent at every reconnect forever.
		err = &enosError{err}
	} else {
		data, err = b.enosDispatch(d, kind, req)
	}
	if err != nil {
		return b.enosFail(c, cl, d, topic, req.ID, err)
	}
	b.metrics.uplinks.WithLabelValues(enosLabel(topic)).Inc()
	b.metrics.uplinkTime.Observe(time.Since(start).Seconds())
	c.after = func() { b.publishEnOS(enos.ReplyTopic(topic), enos.Reply(req.ID, enos.CodeSuccess, data, "")) }
	return errIgnore
}

// requestID reads the id of a message that is not otherwise decoded.
func requestID(payload []byte) json.RawMessage {
	r, _ := enos.DecodeRequest(payload)
	return r.ID
}

// enosError marks an error of the message itself (malformed), as opposed
// to the engine's.
type enosError struct{ err error }

func (e *enosError) Error() string { return e.err.Error() }

// enosDispatch maps a decoded request onto the engine and returns the
// reply's data.
func (b *Broker) enosDispatch(d *engine.Device, kind enos.Kind, req enos.Request) (any, error) {
	ctx, cancel := b.call()
	defer cancel()
	switch kind {
	case enos.KindInform:
		v, err := enos.DecodeInform(req.Params)
		if err != nil {
			return nil, &enosError{err}
		}
		_, err = b.cfg.Devices.Inform(ctx, *d, wire.Inform{Modules: map[string]string{ota.DefaultModule: v}})
		return nil, err
	case enos.KindProgress:
		p, err := enos.DecodeProgress(req.Params)
		if err != nil {
			return nil, &enosError{err}
		}
		return nil, b.enosProgress(ctx, d, enos.Step(p))
	}
	return b.getVersion(ctx, d) // getversion, request
}

// getVersion answers the firmware the device may take now: the offer of
// its job in a running task (otter has one active job per device and
// module, so the list has at most one entry), or an empty list.
func (b *Broker) getVersion(ctx context.Context, d *engine.Device) ([]enos.Firmware, error) {
	a, err := b.cfg.Devices.Request(ctx, *d, wire.Request{Module: ota.DefaultModule})
	if err != nil {
		return nil, err
	}
	list := []enos.Firmware{}
	if up, ok := upgradeOf(a); ok {
		b.enos.set(wire.Username(d.Product, d.Key), commandOf(up))
		list = append(list, firmwareOf(up))
	}
	return list, nil
}

func upgradeOf(a *engine.Answer) (wire.Upgrade, bool) {
	if a == nil {
		return wire.Upgrade{}, false
	}
	up, ok := a.Message.(wire.Upgrade)
	return up, ok && !up.Cancel
}

// enosProgress applies a progress step to the device's job: the first
// report on a job that asks for a confirmation confirms it first, -5
// declines, 0..99 is the download's percent, 100 the end of the install
// (the device reports its version next: the target is a success, another
// a rollback), and a failure ends the job.
func (b *Broker) enosProgress(ctx context.Context, d *engine.Device, o enos.Outcome) error {
	name := wire.Username(d.Product, d.Key)
	cmd, known := b.enos.get(name)
	if known {
		err := b.applyStep(ctx, d, cmd, o)
		if code, _ := engine.DeviceFault(err); code != wire.CodeUnknownJob {
			return err
		}
		// Not this device's job (the key was deleted and made again):
		// ask the engine which job it has.
	}
	a, err := b.cfg.Devices.Request(ctx, *d, wire.Request{Module: ota.DefaultModule})
	if err != nil {
		return err
	}
	up, ok := upgradeOf(a)
	if !ok {
		return errNoEnOSJob
	}
	cmd = commandOf(up)
	b.enos.set(name, cmd)
	return b.applyStep(ctx, d, cmd, o)
}

// applyStep applies a progress step to the job of cmd.
func (b *Broker) applyStep(ctx context.Context, d *engine.Device, cmd enosCommand, o enos.Outcome) error {
	name := wire.Username(d.Product, d.Key)
	h := b.cfg.Devices
	if o.Kind == enos.StepDeclined {
		_, err := h.Confirm(ctx, *d, wire.Confirm{Job: cmd.job, Attempt: cmd.attempt, Accept: false, Message: o.Message})
		return err
	}
	if cmd.confirm && o.Kind != enos.StepFailed {
		if _, err := h.Confirm(ctx, *d, wire.Confirm{Job: cmd.job, Attempt: cmd.attempt, Accept: true}); err != nil {
			return err
		}
		b.enos.confirmed(name, cmd.job)
	}
	p := wire.Progress{Job: cmd.job, Attempt: cmd.attempt, State: wire.StateDownloading, Percent: o.Percent}
	switch o.Kind {
	case enos.StepDone:
		p = wire.Progress{Job: cmd.job, Attempt: cmd.attempt, State: wire.StateRebooting}
	case enos.StepFailed:
		p = wire.Progress{Job: cmd.job, Attempt: cmd.attempt, State: wire.StateFailed, Code: o.Code, Message: o.Message}
	}
	// The answer may be the cancel of the job: EnOS has no form for it.
	_, err := h.Progress(ctx, *d, p)
	return err
}

// upgradeReply takes a device's answer to an upgrade command. EnOS's SDKs
// answer 1101 when no handler is registered and 500 when it failed; the
// job's outcome comes from the progress and version reports, so an error
// here is only logged.
func (b *Broker) upgradeReply(c *conn, d *engine.Device, payload []byte) {
	b.metrics.uplinks.WithLabelValues("enos_upgrade_reply").Inc()
	r, err := enos.DecodeUpgradeReply(payload)
	if err == nil && (r.Code == 0 || r.Code == enos.CodeSuccess) {
		return
	}
	c.logs.Do(func() {
		b.log.Info("mqtt: EnOS device answered an upgrade command with an error", "product", d.Product, "device", d.Key,
			"job", wire.Clip(r.ID, maxQuoted), "code", r.Code, "message", r.Message, "err", err)
	})
}

// enosFail handles an error of an EnOS message like failUplink does for
// otter's: the device's mistake is answered (code 460, or 402 for a
// deleted device's) and acknowledged; the server's leaves the message
// unacknowledged and closes the connection, so the device sends it again.
func (b *Broker) enosFail(c *conn, cl *mochi.Client, d *engine.Device, topic string, id json.RawMessage, err error) error {
	if deleted(err) {
		b.metrics.uplinkErrors.WithLabelValues(wire.CodeUnauthorized).Inc()
		if !c.revoked.Swap(true) {
			c.after = func() { b.kick(c) }
		}
		return errReject
	}
	var me *enosError
	code, refused := engine.DeviceFault(err)
	if errors.As(err, &me) {
		code, refused = wire.CodeMalformed, true
	}
	if refused {
		msg := err.Error()
		if ota.ErrorCode(err) != ota.EINTERNAL {
			msg = ota.ErrorMessage(err)
		}
		b.metrics.uplinkErrors.WithLabelValues(code).Inc()
		c.logs.Do(func() {
			b.log.Info("mqtt: EnOS device message refused", "product", d.Product, "device", d.Key,
				"topic", wire.Clip(topic, maxQuoted), "code", code, "err", msg)
		})
		c.after = func() {
			b.publishEnOS(enos.ReplyTopic(topic), enos.Reply(id, enos.CodeParamError, nil, wire.Clip(msg, 1024)))
		}
		return errIgnore
	}
	b.metrics.uplinkErrors.WithLabelValues(wire.CodeUnavailable).Inc()
	c.logs.Do(func() {
		b.log.Warn("mqtt: EnOS device message not stored; closing the connection so the device sends it again",
			"product", d.Product, "device", d.Key, "topic", wire.Clip(topic, maxQuoted), "err", err)
	})
	c.after = func() { b.drop(cl) }
	return errReject
}
