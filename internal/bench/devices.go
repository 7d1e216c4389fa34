package bench

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/sdk/device"
)

// deviceConfig describes the simulated devices of one benchmark.
type deviceConfig struct {
	API       *client.Client
	Token     string
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
	// Executable, when set, runs the devices in processes of their own
	// (`Executable bench devices`) of at most PerProcess devices each;
	// empty runs them in this process.
	Executable string
	PerProcess int
	// TempDir is where simulated devices keep their downloads.
	TempDir string
	// SecretsDir, when set, has the fleet created through the API before
	// any device starts (provision), each segment's secrets in a file
	// there, so that the devices only connect.
	SecretsDir string
	// Progress receives a line about provisioning.
	Progress io.Writer
	// Provisioned, when set, runs after provisioning, before any device
	// starts, with every device's account.
	Provisioned func([]brokeradmin.Want) error
	// AccountsLater says the server makes no broker accounts as it
	// creates the devices: Provisioned seeds them.
	AccountsLater bool
	// Protocol is the devices' protocol (empty: otter's).
	Protocol string
	// CPUProfile, when set with Executable, has each devices process
	// write a CPU profile of its whole run to CPUProfile.<segment>.
	CPUProfile string
}

// segment is a part of the fleet: n devices named prefix00001... that
// connect to one broker address.
type segment struct {
	broker, prefix string
	n              int
}

// part is a running segment: in this process or in a process of its own.
type part interface {
	// err returns the first error that stopped a device or the process.
	err() error
	// stop disconnects the segment's devices and waits for them.
	stop()
	// pid is the process the devices run in.
	pid() int
}

// devices is a running simulated fleet and what its devices did, with the
// time each did it.
type devices struct {
	parts  []part
	cancel context.CancelFunc

	mu        sync.Mutex
	connected map[string]bool
	informed  map[string]time.Time // first inform
	upgrade   map[string]time.Time // first upgrade command
	succeeded map[string]time.Time
	// failures counts failed jobs by code; examples keeps one error text
	// per code.
	failures map[string]int
	examples map[string]string
}

// startDevices provisions and starts the fleet; it returns once every
// device's client runs (connected or still connecting).
func startDevices(ctx context.Context, cfg deviceConfig) (*devices, error) {
	segs, err := segments(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.SecretsDir != "" {
		accounts, err := provision(ctx, cfg, segs)
		if err != nil {
			return nil, err
		}
		if cfg.Provisioned != nil {
			if err := cfg.Provisioned(accounts); err != nil {
				return nil, err
			}
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	d := &devices{
		cancel:    cancel,
		connected: make(map[string]bool, cfg.Devices),
		informed:  make(map[string]time.Time, cfg.Devices),
		upgrade:   make(map[string]time.Time, cfg.Devices),
		succeeded: make(map[string]time.Time, cfg.Devices),
		failures:  map[string]int{},
		examples:  map[string]string{},
	}
	if cfg.Executable != "" && len(segs) > 1 {
		cfg.ConnectRate = max(1, cfg.ConnectRate/len(segs)) // segments start together
	}
	for _, s := range segs {
		p, err := d.startSegment(runCtx, cfg, s)
		if err != nil {
			d.stop()
			return nil, fmt.Errorf("start %d simulated devices on %s: %w", s.n, s.broker, err)
		}
		d.parts = append(d.parts, p)
	}
	return d, nil
}

func (d *devices) startSegment(ctx context.Context, cfg deviceConfig, s segment) (part, error) {
	if cfg.Executable != "" {
		return startProcPart(ctx, cfg, s, d.event)
	}
	f, err := sim.Start(ctx, sim.Config{
		API: cfg.API, Broker: s.broker, PublicKey: cfg.PublicKey, Product: cfg.Product,
		Devices: s.n, Prefix: s.prefix, Version: cfg.Version, ConnectRate: cfg.ConnectRate,
		HTTPClient: downloadClient(), OnEvent: d.event, Secrets: cfg.secrets(s), Protocol: cfg.Protocol,
	})
	if err != nil {
		if f != nil {
			f.Wait()
		}
		return nil, err
	}
	return simPart{f}, nil
}

// secrets is where a segment's device secrets are kept, or nil.
func (cfg deviceConfig) secrets(s segment) sim.SecretStore {
	if cfg.SecretsDir == "" {
		return nil
	}
	return sim.FileSecrets(cfg.secretsFile(s))
}

func (cfg deviceConfig) secretsFile(s segment) string {
	return filepath.Join(cfg.SecretsDir, s.prefix+"secrets.csv")
}

// provisionChunk is how many devices one import request creates: with an
// external broker, each device's account is a command to the broker, and
// a smaller request shows progress and stays within the server's
// deadlines.
const provisionChunk = 100

// provision creates every segment's devices through the API (with their
// broker accounts, unless AccountsLater) and keeps their secrets in
// SecretsDir, named as the simulator names them; it returns the devices
// with their secrets.
func provision(ctx context.Context, cfg deviceConfig, segs []segment) ([]brokeradmin.Want, error) {
	done := 0
	t0 := time.Now()
	what := "devices and their broker accounts"
	if cfg.AccountsLater {
		what = "devices (their broker accounts are seeded next)"
	}
	accounts := make([]brokeradmin.Want, 0, cfg.Devices)
	for _, s := range segs {
		secrets := make(map[string]string, s.n)
		for from := 0; from < s.n; from += provisionChunk {
			var b strings.Builder
			for i := from; i < min(from+provisionChunk, s.n); i++ {
				fmt.Fprintf(&b, "%s%05d,sim=true\n", s.prefix, i+1)
			}
			res, err := cfg.API.ImportDevices(ctx, cfg.Product, strings.NewReader(b.String()))
			if err != nil {
				return nil, fmt.Errorf("create devices %s%05d and up: %w", s.prefix, from+1, err)
			}
			for _, d := range res.Devices {
				secrets[d.Key] = d.Secret
				accounts = append(accounts, brokeradmin.Want{Device: brokeradmin.Device{Product: cfg.Product, Key: d.Key}, Secret: d.Secret})
			}
			done += len(res.Devices)
			if done%1000 < provisionChunk || done == cfg.Devices {
				say(cfg.Progress, "created %d of %d %s (%s)", done, cfg.Devices, what, time.Since(t0).Round(time.Millisecond))
			}
		}
		if err := sim.FileSecrets(cfg.secretsFile(s)).Save(secrets); err != nil {
			return nil, fmt.Errorf("keep the device secrets: %w", err)
		}
	}
	return accounts, nil
}

// downloadConns bounds the download connections of one process of
// simulated devices: each is an open file at both ends.
const downloadConns = 512

// downloadClient downloads firmware for the devices of one process over
// at most downloadConns connections.
func downloadClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxConnsPerHost = downloadConns
	t.MaxIdleConnsPerHost = downloadConns
	t.MaxIdleConns = downloadConns
	return &http.Client{Transport: t, Timeout: 10 * time.Minute}
}

// simPart is a segment in this process.
type simPart struct{ f *sim.Fleet }

func (p simPart) err() error { return p.f.Err() }
func (p simPart) stop()      { p.f.Wait() } // the fleet stops with its context
func (p simPart) pid() int   { return os.Getpid() }

// segments splits the fleet by broker address, then by process.
func segments(cfg deviceConfig) ([]segment, error) {
	brokers, err := brokerAddresses(cfg.Broker, cfg.Devices, cfg.PerAddress)
	if err != nil {
		return nil, err
	}
	chunk := cfg.Devices
	if cfg.PerAddress > 0 {
		chunk = min(chunk, cfg.PerAddress)
	}
	if cfg.Executable != "" && cfg.PerProcess > 0 {
		chunk = min(chunk, cfg.PerProcess)
	}
	var segs []segment
	for i, broker := range brokers {
		n := cfg.Devices
		if len(brokers) > 1 {
			n = min(cfg.PerAddress, cfg.Devices-i*cfg.PerAddress)
		}
		for off := 0; off < n; off += chunk {
			segs = append(segs, segment{broker: broker, n: min(chunk, n-off)})
		}
	}
	for i := range segs {
		segs[i].prefix = prefix(i, len(segs))
	}
	return segs, nil
}

// prefix names the devices of the i-th of n segments.
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
		code := e.Code
		if code == "" {
			code = "no code"
		}
		d.failures[code]++
		if _, ok := d.examples[code]; !ok && e.Err != nil {
			d.examples[code] = e.Err.Error()
		}
	}
}

func firstTime(m map[string]time.Time, key string, at time.Time) {
	if _, ok := m[key]; !ok {
		m[key] = at
	}
}

// failureCounts returns the failures by code, each with an example.
func (d *devices) failureCounts() map[string]Failure {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]Failure, len(d.failures))
	for code, n := range d.failures {
		out[code] = Failure{Count: n, Example: d.examples[code]}
	}
	return out
}

// succeededCount returns how many devices have said they succeeded.
func (d *devices) succeededCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.succeeded)
}

// counts returns how many devices are connected and have informed.
func (d *devices) counts() (connected, informed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.connected), len(d.informed)
}

// err returns the first error a device's client or process stopped with.
func (d *devices) err() error {
	for _, p := range d.parts {
		if err := p.err(); err != nil {
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

// cpu returns the CPU time of the processes the devices run in (this one
// included when they run here).
func (d *devices) cpu() (time.Duration, error) {
	pids := map[int]bool{os.Getpid(): true}
	for _, p := range d.parts {
		pids[p.pid()] = true
	}
	var total time.Duration
	var errs []error
	for _, pid := range slices.Sorted(maps.Keys(pids)) {
		u, err := ReadUsage(pid)
		errs = append(errs, err)
		total += u.CPU
	}
	return total, errors.Join(errs...)
}

// stop disconnects every device and waits for them.
func (d *devices) stop() {
	d.cancel()
	for _, p := range d.parts {
		p.stop()
	}
}
