// Package enginetest runs the rollout engine in tests, with stand-ins for
// what the server wires to it: a Downlink that records what the engine
// sends instead of reaching devices, download URLs that point nowhere, and
// a command signer with a key the test holds. Open the store with storetest.
// Only tests import this package.
package enginetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/sdk/wire"
)

// Tick is the engine's timer period in tests: short, so that timeouts,
// retries and windows fire without the test waiting a second for each.
const Tick = 10 * time.Millisecond

// Start runs an engine made from cfg until the test ends or stop is called.
// Fields left zero get test values: a Downlink that records, URLs, a fresh
// metrics registry, a logger that discards, and Tick. stop waits for the
// engine to return, so a test may then start another on the same store, as
// a restart would; calling it again does nothing.
func Start(tb testing.TB, cfg engine.Config) (e *engine.Engine, stop func()) {
	tb.Helper()
	if cfg.Downlink == nil {
		cfg.Downlink = &Downlink{}
	}
	if cfg.URLs == nil {
		cfg.URLs = URLs{}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Tick == 0 {
		cfg.Tick = Tick
	}
	e, err := engine.New(cfg)
	if err != nil {
		tb.Fatalf("engine: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			// Run answers nil when stopped, but an error wrapping Canceled
			// when stopped while it still loads its tasks (a test that ends
			// fast).
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				tb.Errorf("engine: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return e, stop
}

// Downlink is an engine.Downlink that records what the engine sends, by
// device key. It fails loudly (panics, in the engine's goroutine) on an
// upgrade command that devices could not decode. The zero value is ready;
// it is safe for concurrent use.
type Downlink struct {
	mu   sync.Mutex
	sent map[string][]Message
}

// Message is one message the engine sent to a device.
type Message struct {
	Product string
	Kind    string
	Payload []byte
}

// Send records the message.
func (d *Downlink) Send(product, device, kind string, payload []byte) {
	if kind == string(wire.KindUpgrade) {
		if _, err := wire.DecodeUpgrade(payload); err != nil {
			panic(fmt.Sprintf("the engine sent an invalid upgrade: %v: %s", err, payload))
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sent == nil {
		d.sent = map[string][]Message{}
	}
	d.sent[device] = append(d.sent[device], Message{Product: product, Kind: kind, Payload: bytes.Clone(payload)})
}

// To returns the messages sent to device, oldest first.
func (d *Downlink) To(device string) []Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.sent[device])
}

// Kinds returns the kinds of the messages sent to device, oldest first.
func (d *Downlink) Kinds(device string) []string {
	var kinds []string
	for _, m := range d.To(device) {
		kinds = append(kinds, m.Kind)
	}
	return kinds
}

// Upgrades returns the upgrade commands sent to device, oldest first.
func (d *Downlink) Upgrades(device string) []wire.Upgrade {
	var ups []wire.Upgrade
	for _, m := range d.To(device) {
		if m.Kind != string(wire.KindUpgrade) {
			continue
		}
		u, err := wire.DecodeUpgrade(m.Payload) // Send checked it
		if err != nil {
			panic(err)
		}
		ups = append(ups, u)
	}
	return ups
}

// LastUpgrade returns the newest upgrade command sent to device, if any.
func (d *Downlink) LastUpgrade(device string) (wire.Upgrade, bool) {
	ups := d.Upgrades(device)
	if len(ups) == 0 {
		return wire.Upgrade{}, false
	}
	return ups[len(ups)-1], true
}

// URLs is an engine.URLSigner whose download URLs name the firmware and the
// device but point at a closed port: tests of the engine download nothing.
type URLs struct{}

// DownloadURL returns http://127.0.0.1:1/dl/<id>?d=<product>/<device>.
func (URLs) DownloadURL(product, device string, firmwareID int64) string {
	return "http://127.0.0.1:1/dl/" + strconv.FormatInt(firmwareID, 10) + "?d=" + product + "/" + device
}

// CommandSigner is an engine.CommandSigner that signs with Key, as
// internal/signing does with the server's key.
type CommandSigner struct{ Key ed25519.PrivateKey }

// SignCommand signs c with Key.
func (s CommandSigner) SignCommand(c wire.Command) string { return c.Sign(s.Key) }
