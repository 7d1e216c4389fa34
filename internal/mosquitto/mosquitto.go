// Package mosquitto runs a private Mosquitto 2 with the dynamic security
// plugin: a child process on a free port of 127.0.0.1 with its own
// configuration in a folder the caller gives. The cluster tests (through
// mosquittotest) and the cluster benchmarks start their broker with it.
package mosquitto

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Admin credentials of the plugin's admin client in every broker started
// here.
const (
	AdminUser     = "admin"
	AdminPassword = "admin-secret"
)

// ErrNotInstalled says Mosquitto 2, mosquitto_ctrl or the dynamic security
// plugin is missing.
var ErrNotInstalled = errors.New("mosquitto 2 with the dynamic security plugin is not installed (apt-get install mosquitto)")

// Broker is a running Mosquitto.
type Broker struct {
	Addr string // 127.0.0.1:port
	// TLSAddr is the listener over TLS (mqtts://) when Options.CertFile
	// is set, "" otherwise.
	TLSAddr string
	Dir     string // its configuration, dynamic security file and nothing else

	bin, conf string
	// dieWithParent is Options.DieWithParent, also for Resume.
	dieWithParent bool
	mu            sync.Mutex // guards cmd and done across Restart
	cmd           *exec.Cmd
	done          chan struct{}
	log           *lockedBuffer
}

// URL is the broker's mqtt:// URL.
func (b *Broker) URL() *url.URL { return &url.URL{Scheme: "mqtt", Host: b.Addr} }

// AdminURL is the broker's mqtt:// URL with the plugin admin's
// credentials: otter's --broker with --broker-admin dynsec.
func (b *Broker) AdminURL() string {
	return "mqtt://" + AdminUser + ":" + AdminPassword + "@" + b.Addr
}

// DynsecFile is the dynamic security plugin's file, which it reads when
// the broker starts and rewrites after every command.
func (b *Broker) DynsecFile() string { return filepath.Join(b.Dir, dynsecFile) }

const dynsecFile = "dynsec.json"

// Log returns what the broker has logged so far.
func (b *Broker) Log() string { return b.log.String() }

// PID is the broker's process.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd.Process.Pid
}

// Options tunes Start.
type Options struct {
	// Quiet logs connections and errors only, not every message: a broker
	// under a benchmark's load would otherwise spend its time logging.
	Quiet bool
	// Config holds more lines of mosquitto.conf, e.g. the limits
	// docs/cluster.md recommends (TunedForOtter).
	Config []string
	// DieWithParent kills the broker when the process that started it
	// dies (Linux), so an interrupted benchmark leaves no broker behind.
	DieWithParent bool
	// CertFile and KeyFile, when set, add a second listener over TLS
	// (TLSAddr) with that certificate and key; it takes the same accounts.
	CertFile, KeyFile string
}

// TunedForOtter are the limits docs/cluster.md's Mosquitto configuration
// sets: otter's uplinks in flight, and how far the scheduling replica may
// fall behind before Mosquitto drops its messages (the default, 1000,
// drops a fleet's burst).
var TunedForOtter = []string{"max_inflight_messages 128", "max_queued_messages 100000"}

// Start starts a broker in dir (which must exist and is left to the
// caller) whose dynamic security plugin has only the admin client
// (AdminUser, AdminPassword). Anonymous clients are refused.
func Start(dir string, opts Options) (*Broker, error) {
	bin, ctrl, plugin, err := Find()
	if err != nil {
		return nil, err
	}
	dynsec := filepath.Join(dir, dynsecFile)
	out, err := exec.Command(ctrl, "dynsec", "init", dynsec, AdminUser, AdminPassword).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mosquitto_ctrl dynsec init: %w\n%s", err, out)
	}
	// A port picked here may be taken before Mosquitto binds it: try again.
	for attempt := 0; ; attempt++ {
		b, err := start(bin, dir, plugin, dynsec, opts)
		if err == nil || attempt == 2 {
			return b, err
		}
	}
}

// Find locates the broker, mosquitto_ctrl and the plugin.
func Find() (bin, ctrl, plugin string, err error) {
	bin, err1 := exec.LookPath("mosquitto")
	if err1 != nil {
		bin, err1 = exec.LookPath("/usr/sbin/mosquitto")
	}
	ctrl, err2 := exec.LookPath("mosquitto_ctrl")
	plugins, _ := filepath.Glob("/usr/lib/*/mosquitto_dynamic_security.so")
	plugins = append(plugins, "/usr/lib/mosquitto_dynamic_security.so", "/usr/local/lib/mosquitto_dynamic_security.so")
	for _, p := range plugins {
		if _, err := os.Stat(p); err == nil {
			plugin = p
			break
		}
	}
	if err1 != nil || err2 != nil || plugin == "" {
		return "", "", "", fmt.Errorf("%w: %v %v plugin %q", ErrNotInstalled, err1, err2, plugin)
	}
	return bin, ctrl, plugin, nil
}

// start runs Mosquitto in the foreground on a free port and waits until it
// accepts connections.
func start(bin, dir, plugin, dynsec string, opts Options) (*Broker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	logTypes := "log_type all\n"
	if opts.Quiet {
		logTypes = "log_type error\nlog_type warning\nlog_type notice\n"
	}
	// "user root" keeps a broker started as root from switching to the
	// mosquitto user, who could not read the temporary folder; it is
	// ignored when not root.
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\nuser root\npersistence false\n"+
		"log_dest stderr\n%splugin %s\nplugin_opt_config_file %s\n", port, logTypes, plugin, dynsec)
	for _, line := range opts.Config {
		text += line + "\n"
	}
	tlsAddr := ""
	if opts.CertFile != "" {
		tlsPort, err := freePort()
		if err != nil {
			return nil, err
		}
		text += fmt.Sprintf("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\n", tlsPort, opts.CertFile, opts.KeyFile)
		tlsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	b := &Broker{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), TLSAddr: tlsAddr, Dir: dir, bin: bin, conf: conf, log: &lockedBuffer{quiet: opts.Quiet}, dieWithParent: opts.DieWithParent}
	if err := b.run(); err != nil {
		return nil, fmt.Errorf("mosquitto on port %d: %w\n%s", port, err, b.Log())
	}
	return b, nil
}

// run starts the process and waits until it listens.
func (b *Broker) run() error {
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if b.dieWithParent {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	if err := b.awaitListening(done, 10*time.Second); err != nil {
		b.Kill()
		return err
	}
	return nil
}

// Restart kills the broker (SIGKILL: no goodbye to its clients) and starts
// it again on the same port with the same configuration; what the dynamic
// security plugin saved survives, sessions do not (persistence is off).
func (b *Broker) Restart() error {
	b.Kill()
	return b.Resume()
}

// Kill stops the broker with SIGKILL; Resume starts it again. Clients see
// the broker gone in between.
func (b *Broker) Kill() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

// Resume starts a killed broker again on the same port, as Restart does.
func (b *Broker) Resume() error {
	if err := b.run(); err != nil {
		return fmt.Errorf("start mosquitto again: %w\n%s", err, b.Log())
	}
	return nil
}

// Close stops the broker.
func (b *Broker) Close() { b.Kill() }

func (b *Broker) awaitListening(exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err == nil && b.TLSAddr != "" {
			c.Close()
			c, err = net.DialTimeout("tcp", b.TLSAddr, time.Second)
		}
		if err == nil {
			return c.Close()
		}
		select {
		case <-exited:
			return errors.New("exited at start")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after %s: %w", limit, err)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects the broker's output from its two streams; a quiet
// broker's log keeps its last 64 KiB only.
type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	quiet bool
}

const quietLogKeep = 64 << 10

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	if l.quiet && l.buf.Len() > 2*quietLogKeep {
		l.buf.Next(l.buf.Len() - quietLogKeep)
	}
	return n, err
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
