package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/sdk/device"
)

// deviceConfig describes the simulated devices of one benchmark.
type deviceConfig struct {
	API       *client.Client
	Broker    string
	PublicKey ed25519.PublicKey
	Product   string
	Devices   int
	Version   string
	// PerAddress is the most devices that connect to one broker address;
	// larger fleets spread over 127.0.0.1, 127.0.0.2, ... (the server
	// must then listen on a wildcard address).
	PerAddress  int
	ConnectRate int
}

// devices is a running simulated fleet (one sim.Fleet per broker address)
// and what its devices did, with the time each did it.
type devices struct {
	fleets []*sim.Fleet
	cancel context.CancelFunc

	mu        sync.Mutex
	connected map[string]bool
	informed  map[string]time.Time // first inform
	upgrade   map[string]time.Time // first upgrade command
	succeeded map[string]time.Time
	// failures counts failed jobs by code (with the error's text when the
	// device gave no code).
	failures map[string]int
}

// startDevices provisions and starts the fleet; it returns once every
// device's client runs (connected or still connecting).
func startDevices(ctx context.Context, cfg deviceConfig) (*devices, error) {
	brokers, err := brokerAddresses(cfg.Broker, cfg.Devices, cfg.PerAddress)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	d := &devices{
		cancel:    cancel,
		connected: make(map[string]bool, cfg.Devices),
		informed:  make(map[string]time.Time, cfg.Devices),
		upgrade:   make(map[string]time.Time, cfg.Devices),
		succeeded: make(map[string]time.Time, cfg.Devices),
		failures:  map[string]int{},
	}
	for i, broker := range brokers {
		n := min(cfg.PerAddress, cfg.Devices-i*cfg.PerAddress)
		f, err := sim.Start(runCtx, d.simConfig(cfg, broker, n, prefix(i, len(brokers))))
		if f != nil {
			d.fleets = append(d.fleets, f)
		}
		if err != nil {
			d.stop()
			return nil, fmt.Errorf("start %d simulated devices on %s: %w", n, broker, err)
		}
	}
	return d, nil
}

func (d *devices) simConfig(cfg deviceConfig, broker string, n int, prefix string) sim.Config {
	return sim.Config{
		API: cfg.API, Broker: broker, PublicKey: cfg.PublicKey, Product: cfg.Product,
		Devices: n, Prefix: prefix, Version: cfg.Version, ConnectRate: cfg.ConnectRate,
		OnEvent: d.event,
	}
}

// prefix names the devices of the i-th of n fleets.
func prefix(i, n int) string {
	if n == 1 {
		return "bench-"
	}
	return "bench" + strconv.Itoa(i) + "-"
}

// brokerAddresses spreads n devices over broker addresses of at most
// perAddress devices each. One client address can open only as many
// connections to one server address as there are ephemeral ports; every
// 127.x.y.z is the loopback interface, so a server listening on a
// wildcard address takes connections on 127.0.0.2, 127.0.0.3, ... too,
// each with its own range of ports.
func brokerAddresses(broker string, n, perAddress int) ([]string, error) {
	if perAddress <= 0 || n <= perAddress {
		return []string{broker}, nil
	}
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("broker URL %q: %w", broker, err)
	}
	ip := net.ParseIP(u.Hostname()).To4()
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%d devices need more connections than one address has ports (%d): that needs a server on 127.0.0.1, not %s", n, perAddress, u.Hostname())
	}
	var out []string
	for i := 0; i*perAddress < n; i++ {
		if int(ip[3])+i > 254 {
			return nil, fmt.Errorf("%d devices at %d per address need more loopback addresses than 127.0.0.%d..254", n, perAddress, ip[3])
		}
		next := slices.Clone(ip)
		next[3] += byte(i)
		v := *u
		v.Host = net.JoinHostPort(next.String(), u.Port())
		out = append(out, v.String())
	}
	return out, nil
}

// event records the first time each device did something (OnEvent must
// return quickly: it runs in the device's client).
func (d *devices) event(key string, e device.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch e.Kind {
	case device.EventConnected:
		d.connected[key] = true
	case device.EventDisconnected:
		delete(d.connected, key)
	case device.EventInformed:
		firstTime(d.informed, key, e.At)
	case device.EventUpgrade:
		firstTime(d.upgrade, key, e.At)
	case device.EventSucceeded:
		firstTime(d.succeeded, key, e.At)
	case device.EventFailed:
		d.failures[failureCode(e)]++
	}
}

func firstTime(m map[string]time.Time, key string, at time.Time) {
	if _, ok := m[key]; !ok {
		m[key] = at
	}
}

func failureCode(e device.Event) string {
	switch {
	case e.Code != "" && e.Err != nil:
		return e.Code + ": " + e.Err.Error()
	case e.Code != "":
		return e.Code
	case e.Err != nil:
		return e.Err.Error()
	}
	return "unknown"
}

// failureCounts returns a copy of the failures by code.
func (d *devices) failureCounts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.failures)
}

// counts returns how many devices are connected and have informed.
func (d *devices) counts() (connected, informed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.connected), len(d.informed)
}

// err returns the first error a device's client stopped with.
func (d *devices) err() error {
	for _, f := range d.fleets {
		if err := f.Err(); err != nil {
			return err
		}
	}
	return nil
}

// since returns, sorted, how long after t0 each device first did what m
// records.
func (d *devices) since(m map[string]time.Time, t0 time.Time) []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]time.Duration, 0, len(m))
	for _, at := range m {
		out = append(out, at.Sub(t0))
	}
	slices.Sort(out)
	return out
}

// stop disconnects every device and waits for them.
func (d *devices) stop() {
	d.cancel()
	for _, f := range d.fleets {
		f.Wait()
	}
}
