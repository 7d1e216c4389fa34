package devicehttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
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
	return f.runSDKWith(key, inst, nil), inst
}

// runSDKWith runs the SDK client as device key with inst; edit adjusts
// its config.
func (f *fixture) runSDKWith(key string, inst *memInstaller, edit func(*device.Config)) *device.Client {
	f.t.Helper()
	cfg := device.Config{
		HTTPBase: f.url, Product: "demo", Device: key, Secret: f.secrets[key],
		PublicKey: f.pub, Installer: inst,
		PollInterval: 50 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryCap: 200 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := device.New(cfg)
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
	return c
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

// A task with confirm install: the job shows that the device waits for
// its local confirmation after the verified download; a decline ends it
// rejected with the device's reason, an accept installs.
func TestSDKConfirmAfterDownload(t *testing.T) {
	for _, accept := range []bool{false, true} {
		t.Run(map[bool]string{false: "decline", true: "accept"}[accept], func(t *testing.T) {
			f := newFixture(t)
			asked, answer := make(chan struct{}, 1), make(chan struct{})
			inst := &memInstaller{version: "1.0.0"}
			f.runSDKWith("d1", inst, func(c *device.Config) {
				c.ConfirmInstall = func(ctx context.Context, up wire.Upgrade) (bool, string) {
					asked <- struct{}{}
					<-answer
					return accept, "the user postponed it"
				}
			})
			task := f.createTask(ota.TaskSpec{FirmwareID: f.fw.ID, Mode: ota.ModePush,
				Target: ota.Target{Devices: []string{"d1"}}, Policy: ota.Policy{Confirm: ota.ConfirmInstall}})
			<-asked
			eventually(t, func() bool {
				got, err := f.st.GetTask(f.ctx, task.ID)
				return err == nil && got.Counts[ota.JobAwaitingInstall] == 1
			}, "the job to await the install confirmation")
			close(answer)
			want := map[bool]ota.JobState{false: ota.JobRejected, true: ota.JobSucceeded}[accept]
			done := f.waitTask(task.ID, ota.TaskCompleted)
			if done.Counts[want] != 1 {
				t.Fatalf("task counts %v, want 1 %s", done.Counts, want)
			}
			jobs, _, err := f.st.ListJobs(f.ctx, store.JobFilter{TaskID: task.ID}, store.Page{})
			if err != nil || len(jobs) != 1 {
				t.Fatalf("jobs %v, %v", jobs, err)
			}
			_, version := inst.installed()
			switch {
			case !accept && (jobs[0].Message != "the user postponed it" || version != "1.0.0"):
				t.Errorf("declined job: message %q, device runs %s", jobs[0].Message, version)
			case accept && version != "1.1.0":
				t.Errorf("accepted job: device runs %s", version)
			}
		})
	}
}

// tamperingProxy forwards the device API to the server and lets a test
// rewrite the upgrade commands that pass through it.
func (f *fixture) tamperingProxy(rewrite func(map[string]any) map[string]any) string {
	f.t.Helper()
	target, err := url.Parse(f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(target)
	p.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != wire.PathUpgrade || r.StatusCode != http.StatusOK {
			return nil
		}
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			return err
		}
		b, _ := json.Marshal(rewrite(m))
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(p)
	f.t.Cleanup(srv.Close)
	return srv.URL
}

// A signed old release with allow_downgrade:true added in transit: the
// command signature does not verify and the SDK installs nothing.
func TestSDKRefusesTamperedAllowDowngrade(t *testing.T) {
	f := newFixture(t)
	old := f.firmware("demo", "0.9.0", randomBytes(t, 1000), func(fw *ota.Firmware) { fw.FromVersions = []string{"1.0.0"} })
	proxy := f.tamperingProxy(func(m map[string]any) map[string]any {
		m["allow_downgrade"] = true
		return m
	})
	inst := &memInstaller{version: "1.0.0"}
	f.runSDKWith("d1", inst, func(c *device.Config) { c.HTTPBase = proxy })
	task := f.createTask(ota.TaskSpec{FirmwareID: old.ID, Mode: ota.ModePush, Target: ota.Target{Devices: []string{"d1"}}})
	done := f.waitTask(task.ID, ota.TaskCompleted)
	jobs, _, err := f.st.ListJobs(f.ctx, store.JobFilter{TaskID: task.ID}, store.Page{})
	if err != nil || len(jobs) != 1 || jobs[0].Code != ota.CodeSignatureInvalid {
		t.Fatalf("counts %v, jobs %+v (%v); want one failed %s", done.Counts, jobs, err, ota.CodeSignatureInvalid)
	}
	if image, version := inst.installed(); image != nil || version != "1.0.0" {
		t.Errorf("device installed %d bytes, runs %s", len(image), version)
	}
}

// A command captured in transit and replayed after the job succeeded
// never installs again.
func TestSDKIgnoresReplayedCommand(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var captured map[string]any
	replaying := false
	replayed := make(chan struct{}, 100)
	proxy := f.tamperingProxy(func(m map[string]any) map[string]any {
		mu.Lock()
		defer mu.Unlock()
		if captured == nil {
			captured = m
		}
		return m
	})
	target, _ := url.Parse(proxy)
	fwd := httputil.NewSingleHostReverseProxy(target)
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		replay := replaying && r.URL.Path == wire.PathUpgrade
		mu.Unlock()
		if !replay {
			fwd.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		json.NewEncoder(w).Encode(captured) // answers every poll with the old command
		mu.Unlock()
		select {
		case replayed <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(attacker.Close)
	inst := &countingInstaller{memInstaller: memInstaller{version: "1.0.0"}}
	f.runSDKWith("d1", &inst.memInstaller, func(c *device.Config) { c.HTTPBase = attacker.URL; c.Installer = inst })
	task := f.task(ota.ModePush, "d1")
	f.waitTask(task.ID, ota.TaskCompleted)
	writes := inst.writes()
	mu.Lock()
	replaying = true
	mu.Unlock()
	for range 3 {
		<-replayed
	}
	if writes != 1 || inst.writes() != writes {
		t.Errorf("installer wrote %d images, then %d; want 1 and no more", writes, inst.writes())
	}
}

// countingInstaller counts the images written.
type countingInstaller struct {
	memInstaller
	mu sync.Mutex
	n  int
}

func (c *countingInstaller) Write(ctx context.Context, up wire.Upgrade, image io.Reader) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.memInstaller.Write(ctx, up, image)
}

func (c *countingInstaller) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Opaque versions are not ordered, on the server and in the SDK alike: a
// device on release-b takes release-a, which the firmware's from-versions
// allow, instead of refusing it as a downgrade.
func TestSDKTakesOpaqueVersionFromVersions(t *testing.T) {
	f := newFixture(t)
	fw := f.firmware("demo", "release-a", randomBytes(t, 2000), func(fw *ota.Firmware) { fw.FromVersions = []string{"release-b"} })
	inst := &memInstaller{version: "release-b"}
	f.runSDKWith("d1", inst, nil)
	eventually(t, func() bool {
		d, err := f.st.GetDevice(f.ctx, "demo", "d1")
		return err == nil && d.Versions[ota.DefaultModule] == "release-b"
	}, "the device to report release-b")
	task := f.createTask(ota.TaskSpec{FirmwareID: fw.ID, Mode: ota.ModePush, Target: ota.Target{Devices: []string{"d1"}}})
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 1 {
		t.Fatalf("task counts %v, want 1 succeeded", done.Counts)
	}
	if _, version := inst.installed(); version != "release-a" {
		t.Fatalf("device runs %s, want release-a", version)
	}
}
