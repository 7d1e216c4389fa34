package sim

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// simDevice is one simulated device: the SDK client and an in-memory
// installer with two slots.
type simDevice struct {
	key     string
	fleet   *Fleet
	client  *device.Client
	offline bool

	mu      sync.Mutex
	rng     *rand.Rand
	module  string
	version string // the running version
	next    string // the version activated for the next boot
	// installs counts the device's install attempts, for FailFirst.
	installs int
}

var errSimulatedFailure = errors.New("simulated install failure")

// Versions implements device.Installer.
func (d *simDevice) Versions(context.Context) (map[string]string, error) {
	return map[string]string{d.module: d.currentVersion()}, nil
}

func (d *simDevice) currentVersion() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.version
}

// Write implements device.Installer: the image is read and dropped.
func (d *simDevice) Write(ctx context.Context, _ wire.Upgrade, image io.Reader) error {
	_, err := io.Copy(io.Discard, image)
	return err
}

// Activate implements device.Installer, taking InstallTime and failing at
// the configured rate.
func (d *simDevice) Activate(ctx context.Context, up wire.Upgrade) error {
	if t := d.fleet.cfg.InstallTime; t > 0 && !sleep(ctx, t) {
		return ctx.Err()
	}
	d.fleet.stats.installs.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.installs++
	if d.installs <= d.fleet.cfg.FailFirst || d.rng.Float64() < d.fleet.cfg.FailRate {
		return errSimulatedFailure
	}
	d.next = up.Version
	return nil
}

// Reboot implements device.Installer: the new image runs at once, and the
// SDK reports it without the program restarting.
func (d *simDevice) Reboot(context.Context, wire.Upgrade) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.next != "" {
		d.version, d.next = d.next, ""
	}
	return nil
}

// confirm returns the SDK's confirm callback for this device: the fleet's
// Confirm with the device's key, or nil (accept everything).
func (d *simDevice) confirm() device.ConfirmFunc {
	f := d.fleet.cfg.Confirm
	if f == nil {
		return nil
	}
	return func(ctx context.Context, up wire.Upgrade) bool { return f(ctx, d.key, up) }
}

// event passes the SDK's events to the fleet.
func (d *simDevice) event(e device.Event) { d.fleet.event(d.key, e) }

func (d *simDevice) startsOffline() bool { return d.offline }
func (d *simDevice) name() string        { return d.key }

// run runs the SDK client, asking for upgrades when the fleet is in
// request mode.
func (d *simDevice) run(ctx context.Context) error {
	if p := d.fleet.cfg.RequestEvery; p > 0 {
		go d.askEvery(ctx, p)
	}
	return d.client.Run(ctx)
}

// askEvery asks for an upgrade every period, jittered, until ctx ends.
func (d *simDevice) askEvery(ctx context.Context, period time.Duration) {
	for {
		d.mu.Lock()
		wait := time.Duration(float64(period) * (0.5 + d.rng.Float64()))
		d.mu.Unlock()
		if !sleep(ctx, wait) {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := d.client.Request(rctx, d.module)
		cancel()
		if err != nil && !errors.Is(err, device.ErrNoUpgrade) && !errors.Is(err, device.ErrBusy) && ctx.Err() == nil {
			d.fleet.cfg.Logger.Debug("request failed", "device", d.key, "err", err)
		}
	}
}
