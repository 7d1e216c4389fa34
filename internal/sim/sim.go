// Package sim runs a fleet of simulated devices on the real device SDK over
// real MQTT connections: the demo, the end-to-end tests and the benchmarks
// all upgrade devices this way. A fleet may speak EnOS's device protocol
// instead, on raw MQTT as EnOS's device SDKs do (enos.go). Each simulated
// device keeps its firmware slots in memory and can be told to fail, to
// take time installing, to start offline, or to ask for upgrades (request
// mode).
package sim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// Config describes a simulated fleet.
type Config struct {
	// API is the operator client used to create the devices.
	API *client.Client
	// Broker is the MQTT broker URL, e.g. tcp://127.0.0.1:1883.
	Broker string
	// PublicKey is the server's firmware signing key.
	PublicKey ed25519.PublicKey
	Product   string
	// Devices is the fleet size; devices are named Prefix00001 and up.
	Devices int
	Prefix  string
	// Module and Version are what a new device runs at first; a device
	// that exists already keeps the version the server knows it runs.
	Module  string
	Version string
	// FailRate is the chance that one install attempt fails.
	FailRate float64
	// FailFirst makes the first FailFirst install attempts of every device
	// fail, whatever FailRate says: a deterministic failure for tests of
	// retries.
	FailFirst int
	// InstallTime is how long installing takes.
	InstallTime time.Duration
	// OfflineRate is the share of devices that start offline; they
	// connect after OfflineFor.
	OfflineRate float64
	OfflineFor  time.Duration
	// RequestEvery makes every device ask for an upgrade this often
	// (request mode); 0 never asks.
	RequestEvery time.Duration
	// Secrets remembers device secrets between runs; nil keeps none, and
	// devices that exist already get a new secret.
	Secrets SecretStore
	// ConnectRate bounds new MQTT connections per second (0: 2,000), so a
	// large fleet does not overrun the listen backlog at start.
	ConnectRate int
	// HTTPClient, when set, downloads firmware for every device instead of
	// a shared client with unbounded connections. Benchmarks pass one
	// with Transport.MaxConnsPerHost set: every connection is an open
	// file, and a fleet that downloads at once can otherwise run a
	// process out of them.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// OnEvent, when set, sees every SDK event of every device.
	OnEvent func(key string, e device.Event)
	// Confirm, when set, answers for device key an upgrade that asks for
	// confirmation; it may block until ctx ends (the server withdrew the
	// upgrade). nil accepts every upgrade.
	Confirm func(ctx context.Context, key string, up wire.Upgrade) bool
	// RetryCap bounds the SDK's backoff between reconnects and retries
	// (0: 30 s); tests that restart the server make it short.
	RetryCap time.Duration
	// Protocol is the device protocol the fleet speaks: ProtocolOtter (the
	// default, on the device SDK) or ProtocolEnOS (EnOS's device protocol,
	// as EnOS's device SDKs speak it; the product must allow it).
	Protocol string
}

// The device protocols a simulated fleet can speak.
const (
	ProtocolOtter = ota.ProtocolOtter
	ProtocolEnOS  = ota.ProtocolEnOS
)

// member is one simulated device, whatever protocol it speaks.
type member interface {
	// run connects the device and runs it until ctx ends.
	run(ctx context.Context) error
	// startsOffline reports whether the device waits OfflineFor first.
	startsOffline() bool
	currentVersion() string
	name() string
}

// SecretStore keeps device secrets between simulator runs.
type SecretStore interface {
	Load() (map[string]string, error)
	Save(map[string]string) error
}

// Fleet is a running simulated fleet.
type Fleet struct {
	cfg     Config
	devices []member
	stats   counters
	wg      sync.WaitGroup
	ownHTTP *http.Client // the download client the fleet made, closed at the end
	errs    chan error
	// manifests is shared by the fleet's devices: they are sent the same
	// firmware, whose signature one of them checks for all (the
	// simulator's CPU competes with the server's; each device still
	// checks its own command's signature).
	manifests *device.ManifestMemo
}

type counters struct {
	connected, upgrading, succeeded, failed, installs atomic.Int64
}

// Stats is a snapshot of the fleet.
type Stats struct {
	Devices   int   `json:"devices"`
	Connected int64 `json:"connected"`
	Upgrading int64 `json:"upgrading"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	// Installs counts install attempts (images activated or failing to).
	Installs int64          `json:"installs"`
	Versions map[string]int `json:"versions"`
}

// Start makes sure the devices exist on the server and starts them. It
// returns once every device's client runs (offline ones wait inside).
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	creds, err := provision(ctx, cfg)
	if err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, errs: make(chan error, 1), manifests: device.NewManifestMemo()}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = sharedHTTPClient()
		f.ownHTTP = httpClient
	}
	pace := time.NewTicker(time.Second / time.Duration(cfg.ConnectRate))
	defer pace.Stop()
	for i, c := range creds {
		d, err := f.newDevice(i, c, httpClient)
		if err != nil {
			return nil, err
		}
		f.devices = append(f.devices, d)
		select {
		case <-pace.C:
		case <-ctx.Done():
			return f, ctx.Err()
		}
		f.run(ctx, d)
	}
	return f, nil
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "sim-"
	}
	if c.Module == "" {
		c.Module = "default"
	}
	if c.OfflineFor <= 0 {
		c.OfflineFor = 30 * time.Second
	}
	if c.ConnectRate <= 0 {
		c.ConnectRate = 2000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RetryCap <= 0 {
		c.RetryCap = 30 * time.Second
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolOtter
	}
	return c
}

func (c Config) check() error {
	switch {
	case c.API == nil:
		return errors.New("sim: no API client")
	case c.Broker == "":
		return errors.New("sim: no MQTT broker URL")
	case c.Devices <= 0 || c.Devices > 1_000_000:
		return fmt.Errorf("sim: %d devices: choose 1 to 1,000,000", c.Devices)
	case c.FailRate < 0 || c.FailRate > 1 || c.OfflineRate < 0 || c.OfflineRate > 1:
		return errors.New("sim: fail and offline rates are fractions between 0 and 1")
	case c.FailFirst < 0:
		return fmt.Errorf("sim: fail-first %d must not be negative", c.FailFirst)
	case c.Version == "":
		return errors.New("sim: no initial version")
	case c.Protocol != ProtocolOtter && c.Protocol != ProtocolEnOS:
		return fmt.Errorf("sim: protocol %q: choose %s or %s", c.Protocol, ProtocolOtter, ProtocolEnOS)
	}
	return nil
}

// sharedHTTPClient downloads firmware for every simulated device: one pool
// of connections instead of one per device.
func sharedHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 512
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: t, Timeout: 10 * time.Minute}
}

func (f *Fleet) newDevice(i int, c credential, hc *http.Client) (member, error) {
	if f.cfg.Protocol == ProtocolEnOS {
		return f.newEnOSDevice(i, c, hc), nil
	}
	d := &simDevice{
		key:     c.key,
		fleet:   f,
		rng:     rand.New(rand.NewPCG(uint64(i), 0x07e4)),
		module:  f.cfg.Module,
		version: c.version,
	}
	cl, err := device.New(device.Config{
		Broker: f.cfg.Broker, Product: f.cfg.Product, Device: c.key, Secret: c.secret,
		PublicKey: f.cfg.PublicKey, Manifests: f.manifests, Installer: d, HTTPClient: hc,
		OnEvent: d.event, Logger: f.cfg.Logger, Confirm: d.confirm(),
		RetryBase: min(500*time.Millisecond, f.cfg.RetryCap), RetryCap: f.cfg.RetryCap,
	})
	if err != nil {
		return nil, fmt.Errorf("sim: device %s: %w", c.key, err)
	}
	d.client = cl
	d.offline = d.rng.Float64() < f.cfg.OfflineRate
	return d, nil
}

// run starts one device; an offline one connects after OfflineFor.
func (f *Fleet) run(ctx context.Context, d member) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if d.startsOffline() && !sleep(ctx, f.cfg.OfflineFor) {
			return
		}
		if err := d.run(ctx); err != nil && ctx.Err() == nil {
			select {
			case f.errs <- fmt.Errorf("device %s: %w", d.name(), err):
			default:
			}
		}
	}()
}

// event keeps the fleet's counters from a device's events and passes them
// on to OnEvent.
func (f *Fleet) event(key string, e device.Event) {
	s := &f.stats
	switch e.Kind {
	case device.EventConnected:
		s.connected.Add(1)
	case device.EventDisconnected:
		s.connected.Add(-1)
	case device.EventUpgrade:
		s.upgrading.Add(1)
	case device.EventSucceeded:
		s.upgrading.Add(-1)
		s.succeeded.Add(1)
	case device.EventFailed, device.EventCancelled:
		s.upgrading.Add(-1)
		if e.Kind == device.EventFailed {
			s.failed.Add(1)
		}
	case device.EventConfirmed:
		if !e.Accept { // declined: the upgrade ends here
			s.upgrading.Add(-1)
		}
	}
	if f.cfg.OnEvent != nil {
		f.cfg.OnEvent(key, e)
	}
}

// Wait blocks until every device has stopped (their context ended).
func (f *Fleet) Wait() {
	f.wg.Wait()
	if f.ownHTTP != nil {
		// Idle download connections would hold a server's shutdown.
		f.ownHTTP.CloseIdleConnections()
	}
}

// Err returns the first error a device client stopped with, if any.
func (f *Fleet) Err() error {
	select {
	case err := <-f.errs:
		return err
	default:
		return nil
	}
}

// Stats returns the fleet's current counts and version distribution.
func (f *Fleet) Stats() Stats {
	s := Stats{
		Devices:   len(f.devices),
		Connected: f.stats.connected.Load(),
		Upgrading: f.stats.upgrading.Load(),
		Succeeded: f.stats.succeeded.Load(),
		Failed:    f.stats.failed.Load(),
		Installs:  f.stats.installs.Load(),
		Versions:  map[string]int{},
	}
	for _, d := range f.devices {
		s.Versions[d.currentVersion()]++
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Stop ends the fleet's context with cancel and waits until every device
// has disconnected.
func (f *Fleet) Stop(cancel context.CancelFunc) {
	cancel()
	f.Wait()
}
