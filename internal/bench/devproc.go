package bench

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/sdk/device"
)

// eventLine is one device event, as a devices process reports it on its
// standard output (one JSON object per line).
type eventLine struct {
	Key  string           `json:"k"`
	Kind device.EventKind `json:"e"`
	At   int64            `json:"t"` // Unix nanoseconds
	Code string           `json:"c,omitempty"`
	Err  string           `json:"x,omitempty"`
}

// reported are the event kinds a devices process passes on.
var reported = map[device.EventKind]bool{
	device.EventConnected: true, device.EventDisconnected: true, device.EventInformed: true,
	device.EventUpgrade: true, device.EventSucceeded: true, device.EventFailed: true,
}

// DevicesConfig configures RunDevices, the simulator side of a benchmark
// in a process of its own.
type DevicesConfig struct {
	// Server is the server's base URL and Token an admin token.
	Server, Token string
	Broker        string
	// PublicKey is the server's signing key, in base64.
	PublicKey                string
	Product, Prefix, Version string
	Devices, ConnectRate     int
	// Secrets, when set, is a file of the devices' secrets (key,secret):
	// devices it names are not created again.
	Secrets string
	// Protocol is the devices' protocol (empty: otter's).
	Protocol string
	// CPUProfile, when set, receives a CPU profile of the process from
	// its start until it stops.
	CPUProfile string
}

// RunDevices runs simulated devices until ctx ends, writing their events
// to out as JSON lines. Each device is an open connection and, while it
// downloads, an open file: a process of its own gives the simulator a
// whole open-file limit.
func RunDevices(ctx context.Context, cfg DevicesConfig, out io.Writer) error {
	if _, err := RaiseFileLimit(); err != nil {
		return err
	}
	key, err := base64.StdEncoding.DecodeString(cfg.PublicKey)
	if err != nil {
		return fmt.Errorf("the public key is not base64: %w", err)
	}
	stopProfile, err := startCPUProfile(cfg.CPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	w := &lineWriter{w: bufio.NewWriterSize(out, 64<<10)}
	defer w.flush()
	stopFlushing := w.flushEvery(eventFlushEvery)
	defer stopFlushing()
	sc := sim.Config{
		API: client.New(cfg.Server, cfg.Token, client.WithUserAgent("otter-bench")), Broker: cfg.Broker,
		PublicKey: key, Product: cfg.Product, Devices: cfg.Devices, Prefix: cfg.Prefix, Version: cfg.Version,
		ConnectRate: cfg.ConnectRate, HTTPClient: downloadClient(), OnEvent: w.event, Protocol: cfg.Protocol,
	}
	if cfg.Secrets != "" {
		sc.Secrets = sim.FileSecrets(cfg.Secrets)
	}
	f, err := sim.Start(ctx, sc)
	if err != nil {
		return err
	}
	<-ctx.Done()
	f.Wait()
	return f.Err()
}

// eventFlushEvery is how long a devices process holds its events before
// it writes them to the benchmark: a write system call per event was 3 %
// of the simulator's CPU, and each event carries the time it happened.
const eventFlushEvery = 20 * time.Millisecond

// lineWriter writes events as JSON lines, one writer at a time, through
// a buffer that flushEvery empties.
type lineWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
}

// flushEvery flushes the buffer every period until the returned function
// is called.
func (l *lineWriter) flushEvery(period time.Duration) (stop func()) {
	done := make(chan struct{})
	t := time.NewTicker(period)
	go func() {
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				l.flush()
			}
		}
	}()
	return func() { close(done) }
}

func (l *lineWriter) event(key string, e device.Event) {
	if !reported[e.Kind] {
		return
	}
	line := eventLine{Key: key, Kind: e.Kind, At: e.At.UnixNano(), Code: e.Code}
	if e.Err != nil {
		line.Err = e.Err.Error()
	}
	b, _ := json.Marshal(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(append(b, '\n'))
}

// procPart is a segment of the fleet in a devices process.
type procPart struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the event stream ends
	mu   sync.Mutex
	fail error
}

// startProcPart starts `Executable bench devices` for one segment and
// feeds its events to record.
func startProcPart(ctx context.Context, cfg deviceConfig, s segment, record func(string, device.Event)) (*procPart, error) {
	args := []string{"bench", "devices", "--server", cfg.API.BaseURL(), "--broker", s.broker,
		"--product", cfg.Product, "--prefix", s.prefix, "--devices", strconv.Itoa(s.n), "--version", cfg.Version,
		"--public-key", base64.StdEncoding.EncodeToString(cfg.PublicKey), "--connect-rate", strconv.Itoa(cfg.ConnectRate)}
	if cfg.SecretsDir != "" {
		args = append(args, "--secrets", cfg.secretsFile(s))
	}
	if cfg.Protocol != "" {
		args = append(args, "--protocol", cfg.Protocol)
	}
	if cfg.CPUProfile != "" {
		args = append(args, "--cpuprofile", cfg.CPUProfile+"."+strings.TrimSuffix(s.prefix, "-"))
	}
	cmd := exec.Command(cfg.Executable, args...)
	cmd.Env = append(devicesRuntime(os.Environ()), "OTTER_TOKEN="+cfg.Token)
	if cfg.TempDir != "" {
		cmd.Env = append(cmd.Env, "TMPDIR="+cfg.TempDir)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a devices process: %w", err)
	}
	p := &procPart{cmd: cmd, done: make(chan struct{})}
	go p.read(out, record)
	context.AfterFunc(ctx, func() { _ = cmd.Process.Signal(syscall.SIGTERM) })
	return p, nil
}

// devicesRuntime tunes the Go runtime of a devices process, unless env
// sets the variable already. The simulator's CPU competes with the
// server's on the same machine, and its memory is no figure of the
// benchmark, so it trades memory for CPU: GOGC=400 collects a quarter as
// often, and gcshrinkstackoff=1 keeps each goroutine's grown stack (its
// connection readers grew theirs again after every collection halved
// them: runtime.copystack was 9 % of its CPU).
func devicesRuntime(env []string) []string {
	has := func(name string) bool {
		return slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
	}
	if !has("GOGC") {
		env = append(env, "GOGC=400")
	}
	if !has("GODEBUG") {
		env = append(env, "GODEBUG=gcshrinkstackoff=1")
	}
	return env
}

// read passes the process's events on until its output ends.
func (p *procPart) read(r io.Reader, record func(string, device.Event)) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var l eventLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			p.setErr(fmt.Errorf("devices process %d: unreadable line %.80q: %w", p.cmd.Process.Pid, sc.Text(), err))
			continue
		}
		e := device.Event{Kind: l.Kind, At: time.Unix(0, l.At), Code: l.Code}
		if l.Err != "" {
			e.Err = errors.New(l.Err)
		}
		record(l.Key, e)
	}
	p.setErr(fmt.Errorf("devices process %d stopped", p.cmd.Process.Pid))
}

func (p *procPart) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail == nil {
		p.fail = err
	}
}

func (p *procPart) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fail
}

func (p *procPart) pid() int { return p.cmd.Process.Pid }

// stop waits for the process, which its context's end has asked to stop,
// and kills it after a minute.
func (p *procPart) stop() {
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
	}
	_ = p.cmd.Wait()
}
