package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/device"
)

// otter is a whole server on ephemeral ports with an admin client.
type otter struct {
	t   *testing.T
	srv *server.Server
	api *client.Client
	dir string
}

func start(t *testing.T) *otter {
	t.Helper()
	dir := t.TempDir()
	return startIn(t, dir, storetest.URL(t))
}

func startIn(t *testing.T, dir, db string, edit ...func(*server.Config)) *otter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("OTTER_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := server.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", DBURL: db,
		AdminToken: "otr_e2e-admin-token-for-tests-only", Logger: logger,
	}
	for _, e := range edit {
		e(&cfg)
	}
	s, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start otter: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &otter{t: t, srv: s, api: client.New(s.HTTPURL(), "otr_e2e-admin-token-for-tests-only"), dir: dir}
}

func (o *otter) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	o.t.Cleanup(cancel)
	return ctx
}

// firmware uploads a random image of size bytes.
func (o *otter) firmware(product, version string, size int) (*client.Firmware, []byte) {
	o.t.Helper()
	if _, err := o.api.Product(o.ctx(), product); err != nil {
		if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: product}); err != nil {
			o.t.Fatal(err)
		}
	}
	image := make([]byte, size)
	rand.Read(image)
	fw, err := o.api.UploadFirmware(o.ctx(), client.FirmwareUpload{Product: product, Version: version, Size: int64(size)}, bytes.NewReader(image))
	if err != nil {
		o.t.Fatalf("upload firmware: %v", err)
	}
	return fw, image
}

// fleet starts n simulated devices over MQTT and waits until the server
// knows all their versions.
func (o *otter) fleet(ctx context.Context, product string, n int, mod func(*sim.Config)) *sim.Fleet {
	o.t.Helper()
	key, err := o.api.SigningKey(ctx)
	if err != nil {
		o.t.Fatal(err)
	}
	cfg := sim.Config{API: o.api, Broker: o.srv.MQTTURL(), PublicKey: key.PublicKey, Product: product, Devices: n, Version: "1.0.0"}
	if mod != nil {
		mod(&cfg)
	}
	f, err := sim.Start(ctx, cfg)
	if err != nil {
		o.t.Fatalf("start fleet: %v", err)
	}
	o.eventually(func() bool {
		informed := 0
		// Only this fleet's devices: another may share the product.
		for d, err := range o.api.AllDevices(ctx, client.DeviceFilter{Product: product, Prefix: cfg.Prefix}, client.ListOptions{}) {
			if err != nil {
				o.t.Fatal(err)
			}
			if d.Versions["default"] != "" {
				informed++
			}
		}
		return informed == n-int(float64(n)*cfg.OfflineRate+0.5) || informed == n
	}, "the fleet to report its versions")
	return f
}

func (o *otter) eventually(cond func() bool, what string) {
	o.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			o.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (o *otter) waitTask(ctx context.Context, id int64, state client.TaskState) *client.Task {
	o.t.Helper()
	var task *client.Task
	o.eventually(func() bool {
		var err error
		if task, err = o.api.Task(ctx, id); err != nil {
			o.t.Fatal(err)
		}
		return task.State == state
	}, "task to be "+string(state))
	return task
}

func TestTwentySimulatedDevicesUpgradeThroughOneTask(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 64<<10)
	fleet := o.fleet(ctx, "demo", 20, nil)
	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush, Target: client.Target{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	done := o.waitTask(ctx, task.ID, client.TaskCompleted)
	if done.Counts[client.JobSucceeded] != 20 || done.Total != 20 {
		t.Fatalf("task counts %v total %d, want 20 succeeded", done.Counts, done.Total)
	}
	o.eventually(func() bool { return fleet.Stats().Versions["1.1.0"] == 20 }, "every device to run 1.1.0")
	for d, err := range o.api.AllDevices(ctx, client.DeviceFilter{Product: "demo"}, client.ListOptions{}) {
		if err != nil || d.Versions["default"] != "1.1.0" || !d.Online {
			t.Fatalf("device %s: %+v, %v", d.Key, d, err)
		}
	}
}

func TestRequestModeFleet(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	fleet := o.fleet(ctx, "demo", 5, func(c *sim.Config) {
		c.RequestEvery = 200 * time.Millisecond
		if os.Getenv("OTTER_TEST_LOG") != "" {
			c.OnEvent = func(k string, e device.Event) { t.Logf("%s %s %+v", time.Now().Format("05.000"), k, e) }
		}
	})
	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModeRequest,
		Target: client.Target{Devices: []string{"sim-00001", "sim-00002", "sim-00003"}}})
	if err != nil {
		t.Fatal(err)
	}
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	st := fleet.Stats()
	if st.Versions["1.1.0"] != 3 || st.Versions["1.0.0"] != 2 {
		t.Fatalf("versions %v: want the three listed devices on 1.1.0 and the others on 1.0.0", st.Versions)
	}
}

func TestOfflineDevicesGetTheirPushWhenTheyConnect(t *testing.T) {
	o := start(t)
	ctx := o.ctx()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	secrets := sim.FileSecrets(o.dir + "/secrets.csv")
	keep := func(c *sim.Config) { c.Secrets = secrets }

	// The devices report their version once, then go offline.
	first, stop := context.WithCancel(ctx)
	o.fleet(first, "demo", 3, keep).Stop(stop)
	o.eventually(func() bool {
		for d, err := range o.api.AllDevices(ctx, client.DeviceFilter{Product: "demo"}, client.ListOptions{}) {
			if err != nil || d.Online {
				return false
			}
		}
		return true
	}, "the devices to be offline")

	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush, Target: client.Target{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := o.api.Task(ctx, task.ID); err != nil || got.Counts[client.JobQueued] != 3 {
		t.Fatalf("with every device offline the jobs are %v (%v), want 3 queued", got.Counts, err)
	}
	again, cancel := context.WithCancel(ctx)
	defer cancel()
	fleet := o.fleet(again, "demo", 3, keep)
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	if v := fleet.Stats().Versions["1.1.0"]; v != 3 {
		t.Fatalf("%d devices on 1.1.0 after reconnecting, want 3", v)
	}
}

func TestRestartOnTheSameDataFolderKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	o := startIn(t, dir, "") // SQLite in the data folder
	ctx := o.ctx()
	fw, image := o.firmware("demo", "1.1.0", 10000)
	dev, err := o.api.CreateDevice(ctx, "demo", client.DeviceCreate{Key: "d1", Tags: map[string]string{"site": "paris"}})
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := o.api.CreateToken(ctx, client.TokenCreate{Name: "dash", Role: client.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	key1, err := o.api.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.srv.Close()

	again := startIn(t, dir, "")
	got, err := again.api.Firmware(ctx, fw.ID)
	if err != nil || got.SHA256 != fw.SHA256 || got.Signature != fw.Signature {
		t.Fatalf("firmware after restart: %+v, %v", got, err)
	}
	var buf bytes.Buffer
	if _, err := again.api.DownloadFirmware(ctx, fw.ID, &buf); err != nil || !bytes.Equal(buf.Bytes(), image) {
		t.Fatalf("firmware file after restart: %d bytes, %v", buf.Len(), err)
	}
	if d, err := again.api.Device(ctx, "demo", "d1"); err != nil || d.Tags["site"] != "paris" {
		t.Fatalf("device after restart: %+v, %v", d, err)
	}
	if _, err := client.New(again.srv.HTTPURL(), viewer.Secret).ListProducts(ctx, client.ListOptions{}); err != nil {
		t.Fatalf("viewer token after restart: %v", err)
	}
	key2, err := again.api.SigningKey(ctx)
	if err != nil || !key1.PublicKey.Equal(key2.PublicKey) {
		t.Fatalf("signing key changed across a restart: %v", err)
	}
	// The device's secret still logs it in (HTTP device API).
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, again.srv.HTTPURL()+"/device/v1/upgrade", nil)
	req.SetBasicAuth("demo/d1", dev.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("device login after restart: %s", resp.Status)
	}
}
