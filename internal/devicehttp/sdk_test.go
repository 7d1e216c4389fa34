package devicehttp_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// memInstaller is a device whose image lives in memory; Reboot switches
// at once, as a simulator does.
type memInstaller struct {
	mu      sync.Mutex
	version string
	image   []byte
}

func (m *memInstaller) Versions(context.Context) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return map[string]string{ota.DefaultModule: m.version}, nil
}

func (m *memInstaller) Write(_ context.Context, _ wire.Upgrade, image io.Reader) error {
	b, err := io.ReadAll(image)
	m.mu.Lock()
	m.image = b
	m.mu.Unlock()
	return err
}

func (m *memInstaller) Activate(context.Context, wire.Upgrade) error { return nil }

func (m *memInstaller) Reboot(_ context.Context, up wire.Upgrade) error {
	m.mu.Lock()
	m.version = up.Version
	m.mu.Unlock()
	return nil
}

func (m *memInstaller) installed() ([]byte, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.image, m.version
}

// runSDK runs the SDK client in HTTP mode as device key until the test
// ends, and returns it with its installer.
func (f *fixture) runSDK(key string) (*device.Client, *memInstaller) {
	f.t.Helper()
	inst := &memInstaller{version: "1.0.0"}
	c, err := device.New(device.Config{
		HTTPBase: f.url, Product: "demo", Device: key, Secret: f.secrets[key],
		PublicKey: f.pub, Installer: inst,
		PollInterval: 50 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryCap: 200 * time.Millisecond,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			f.t.Errorf("SDK client: %v", err)
		}
	})
	return c, inst
}

// The Go SDK in HTTP mode, unchanged, carries out a push upgrade against
// this server: it is the client whose expectations the API must meet.
func TestSDKOverHTTPPushMode(t *testing.T) {
	f := newFixture(t)
	_, inst := f.runSDK("d3")
	task := f.task(ota.ModePush, "d3")
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 1 {
		t.Fatalf("task counts %v, want 1 succeeded", done.Counts)
	}
	image, version := inst.installed()
	equalBytes(t, "installed image", image, f.file)
	if version != "1.1.0" {
		t.Fatalf("device runs %s, want 1.1.0", version)
	}
}

// The SDK asks for an upgrade in request mode: first none, then an offer
// it confirms and installs.
func TestSDKOverHTTPRequestMode(t *testing.T) {
	f := newFixture(t)
	c, inst := f.runSDK("d2")
	var err error
	eventually(t, func() bool {
		_, err = c.Request(f.ctx, ota.DefaultModule)
		return !errors.Is(err, device.ErrNotRunning)
	}, "the client to run")
	if !errors.Is(err, device.ErrNoUpgrade) {
		t.Fatalf("request before any task: %v, want ErrNoUpgrade", err)
	}
	task := f.task(ota.ModeRequest, "d2")
	f.waitTask(task.ID, ota.TaskRunning)
	eventually(t, func() bool {
		up, err := c.Request(f.ctx, ota.DefaultModule)
		return err == nil && up.Version == "1.1.0"
	}, "an offer through the SDK")
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 1 {
		t.Fatalf("task counts %v, want 1 succeeded", done.Counts)
	}
	if _, version := inst.installed(); version != "1.1.0" {
		t.Fatalf("device runs %s, want 1.1.0", version)
	}
}
