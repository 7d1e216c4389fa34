// Package mosquittotest runs a real Mosquitto 2 with the dynamic security
// plugin for tests: a child process on a free port with its own
// configuration in a temporary folder, killed when the test ends.
//
// Where Mosquitto is not installed the test is skipped, except under
// CI=true, where it fails: CI must run these tests.
package mosquittotest

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
	"testing"
	"time"
)

// Admin credentials of the plugin's admin client in every broker started
// here.
const (
	AdminUser     = "admin"
	AdminPassword = "admin-secret"
)

// Broker is a running Mosquitto.
type Broker struct {
	Addr string // 127.0.0.1:port
	// TLSAddr is the listener over TLS (mqtts://) of a broker started by
	// StartTLS, "" otherwise.
	TLSAddr string
	Dir     string // its configuration, dynamic security file and nothing else

	bin, conf string
	mu        sync.Mutex // guards cmd and done across Restart
	cmd       *exec.Cmd
	done      chan struct{}
	log       *lockedBuffer
}

// URL is the broker's mqtt:// URL.
func (b *Broker) URL() *url.URL { return &url.URL{Scheme: "mqtt", Host: b.Addr} }

// Log returns what the broker has logged so far.
func (b *Broker) Log() string { return b.log.String() }

// Start starts a broker whose dynamic security plugin has only the admin
// client (AdminUser, AdminPassword). Anonymous clients are refused.
func Start(t testing.TB) *Broker {
	t.Helper()
	return StartTLS(t, "", "")
}

// StartTLS starts a broker as Start does with, when certFile and keyFile
// are given, a second listener over TLS (TLSAddr) with that certificate
// and key. Both listeners take the same accounts.
func StartTLS(t testing.TB, certFile, keyFile string) *Broker {
	t.Helper()
	bin, ctrl, plugin := find(t)
	dir := t.TempDir()
	dynsec := filepath.Join(dir, "dynsec.json")
	out, err := exec.Command(ctrl, "dynsec", "init", dynsec, AdminUser, AdminPassword).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_ctrl dynsec init: %v\n%s", err, out)
	}
	// A port picked here may be taken before Mosquitto binds it: try again.
	for attempt := 0; ; attempt++ {
		b, err := start(bin, dir, plugin, dynsec, certFile, keyFile)
		if err == nil {
			t.Cleanup(func() { b.stop(t) })
			return b
		}
		if attempt == 2 {
			t.Fatal(err)
		}
	}
}

// find locates the broker, mosquitto_ctrl and the plugin.
func find(t testing.TB) (bin, ctrl, plugin string) {
	t.Helper()
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
		msg := fmt.Sprintf("Mosquitto 2 with the dynamic security plugin is not installed (apt-get install mosquitto): %v %v plugin %q", err1, err2, plugin)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin, ctrl, plugin
}

// start runs Mosquitto in the foreground on a free port and waits until it
// accepts connections.
func start(bin, dir, plugin, dynsec, certFile, keyFile string) (*Broker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tlsListener, tlsAddr := "", ""
	if certFile != "" {
		tlsPort, err := freePort()
		if err != nil {
			return nil, err
		}
		tlsListener = fmt.Sprintf("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\n", tlsPort, certFile, keyFile)
		tlsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	// "user root" keeps a broker started as root from switching to the
	// mosquitto user, who could not read the test's temporary folder; it
	// is ignored when not root.
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\nuser root\npersistence false\n"+
		"log_dest stderr\nlog_type all\nplugin %s\nplugin_opt_config_file %s\n%s", port, plugin, dynsec, tlsListener)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	b := &Broker{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), TLSAddr: tlsAddr, Dir: dir, bin: bin, conf: conf, log: &lockedBuffer{}}
	if err := b.run(); err != nil {
		return nil, fmt.Errorf("mosquitto on port %d: %w\n%s", port, err, b.Log())
	}
	return b, nil
}

// run starts the process and waits until it listens.
func (b *Broker) run() error {
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	if err := b.awaitListening(done, 10*time.Second); err != nil {
		b.kill()
		return err
	}
	return nil
}

// Restart kills the broker (SIGKILL: no goodbye to its clients) and starts
// it again on the same port with the same configuration; what the dynamic
// security plugin saved survives, sessions do not (persistence is off).
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.kill()
	if err := b.run(); err != nil {
		t.Fatalf("restart mosquitto: %v\n%s", err, b.Log())
	}
}

// Kill stops the broker with SIGKILL; Resume starts it again. Clients see
// the broker gone in between.
func (b *Broker) Kill() { b.kill() }

// Resume starts a killed broker again on the same port, as Restart does.
func (b *Broker) Resume(t testing.TB) {
	t.Helper()
	if err := b.run(); err != nil {
		t.Fatalf("start mosquitto again: %v\n%s", err, b.Log())
	}
}

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

func (b *Broker) stop(t testing.TB) {
	b.kill()
	if t.Failed() {
		t.Logf("mosquitto log:\n%s", b.Log())
	}
}

func (b *Broker) kill() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects the broker's output from its two streams.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
