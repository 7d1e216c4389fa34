package brokerclient_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
	"github.com/otter-ota/otter/internal/brokerclient"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

const (
	serviceUser     = "otter-svc"
	servicePassword = "svc-secret"
	waitLimit       = 20 * time.Second
)

// registry resolves the devices it knows, with id 7.
type registry map[string]bool

func (r registry) Credentials(_ context.Context, product, key string) (ota.DeviceCredentials, error) {
	if !r[wire.Username(product, key)] {
		return ota.DeviceCredentials{}, ota.Errorf(ota.ENOTFOUND, "no device %s/%s", product, key)
	}
	return ota.DeviceCredentials{DeviceID: 7}, nil
}

// devices records the engine calls; the first failures calls to Inform
// answer that the store is unavailable.
type devices struct {
	mu       sync.Mutex
	calls    []string
	failures int
	changed  chan struct{}
}

func newDevices(failures int) *devices {
	return &devices{failures: failures, changed: make(chan struct{}, 100)}
}

func (d *devices) record(call string) {
	d.mu.Lock()
	d.calls = append(d.calls, call)
	d.mu.Unlock()
	d.changed <- struct{}{}
}

func (d *devices) Connected(_ context.Context, dev engine.Device) error {
	d.record("connected " + dev.Key)
	return nil
}

func (d *devices) Disconnected(_ context.Context, dev engine.Device) error {
	d.record("disconnected " + dev.Key)
	return nil
}

func (d *devices) Inform(_ context.Context, dev engine.Device, m wire.Inform) (*engine.Answer, error) {
	d.mu.Lock()
	fail := d.failures > 0
	d.failures--
	d.mu.Unlock()
	if fail {
		d.record("inform refused")
		return nil, ota.Errorf(ota.EUNAVAILABLE, "the store is down")
	}
	d.record("inform " + dev.Key + " " + m.Modules["default"])
	return nil, nil
}

func (d *devices) Request(_ context.Context, dev engine.Device, m wire.Request) (*engine.Answer, error) {
	d.record("request " + dev.Key)
	return &engine.Answer{Kind: wire.KindReply, Message: wire.Reply{To: wire.KindRequest, Module: m.Module, Error: wire.CodeNoUpgrade}}, nil
}

func (d *devices) Confirm(context.Context, engine.Device, wire.Confirm) (*engine.Answer, error) {
	return nil, nil
}

func (d *devices) Progress(context.Context, engine.Device, wire.Progress) (*engine.Answer, error) {
	return nil, nil
}

func (d *devices) Poll(context.Context, engine.Device) (*engine.Answer, error) { return nil, nil }

// await waits until the calls are want.
func (d *devices) await(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		d.mu.Lock()
		got := append([]string(nil), d.calls...)
		d.mu.Unlock()
		if equal(got, want) {
			return
		}
		if len(got) > len(want) {
			t.Fatalf("engine calls %q, want %q", got, want)
		}
		select {
		case <-d.changed:
		case <-deadline:
			t.Fatalf("engine calls %q, want %q", got, want)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rig is a Mosquitto with otter's service user and one device, demo/d1.
type rig struct {
	b     *mosquittotest.Broker
	admin *dynsec.Admin
}

func newRig(t *testing.T) *rig {
	t.Helper()
	b := mosquittotest.Start(t)
	ctx := testContext(t)
	a, err := dynsec.Dial(ctx, dynsec.Config{URL: b.URL(), Username: mosquittotest.AdminUser, Password: mosquittotest.AdminPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.EnsureService(ctx, serviceUser, servicePassword); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateDevice(ctx, brokeradmin.Device{Product: "demo", Key: "d1"}, "secret-d1"); err != nil {
		t.Fatal(err)
	}
	return &rig{b: b, admin: a}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func (r *rig) dial(t *testing.T, devs engine.Devices) *brokerclient.Client {
	t.Helper()
	c, err := brokerclient.Dial(testContext(t), brokerclient.Config{
		URL: r.b.URL(), Username: serviceUser, Password: servicePassword, ClientID: "otter-test",
		Devices: devs, Resolver: registry{"demo/d1": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// device is demo/d1 as a bare MQTT 5 client.
type device struct {
	key      string
	c        *paho.Client
	received chan *paho.Publish
}

func (r *rig) device(t *testing.T) *device {
	t.Helper()
	return r.deviceNamed(t, "d1")
}

// deviceNamed connects demo/key, whose broker account must exist (its
// password is "secret-" + key).
func (r *rig) deviceNamed(t *testing.T, key string) *device {
	t.Helper()
	conn, err := net.Dial("tcp", r.b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{key: key, received: make(chan *paho.Publish, 8)}
	d.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { d.received <- pr.Packet; return true, nil }}})
	ctx := testContext(t)
	if _, err := d.c.Connect(ctx, &paho.Connect{ClientID: key, CleanStart: true, KeepAlive: 30,
		Username: "demo/" + key, UsernameFlag: true, Password: []byte("secret-" + key), PasswordFlag: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	if _, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: wire.Topic("demo", key, wire.KindReply), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *device) publish(t *testing.T, m wire.Message) byte {
	t.Helper()
	pr, err := d.c.Publish(testContext(t), &paho.Publish{Topic: wire.Topic("demo", d.key, m.Kind()), QoS: 1, Payload: wire.Encode(m)})
	if err != nil {
		t.Fatal(err)
	}
	return pr.ReasonCode
}

func TestUplinksReachTheEngineUntilStoredAndAnswersReachTheDevice(t *testing.T) {
	r := newRig(t)
	devs := newDevices(2)
	c := r.dial(t, devs)
	defer c.Close(context.Background())
	if err := c.Ready(); err != nil {
		t.Fatal(err)
	}
	d := r.device(t)

	// An inform is a connect, then the versions; a store that is down is
	// tried again until it takes the message.
	d.publish(t, wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	devs.await(t, "connected d1", "inform refused", "connected d1", "inform refused", "connected d1", "inform d1 1.0.0")

	// The engine's answer goes to the device's reply topic.
	d.publish(t, wire.Request{Module: "default"})
	select {
	case p := <-d.received:
		if p.Topic != wire.Topic("demo", "d1", wire.KindReply) {
			t.Fatalf("answer on %s", p.Topic)
		}
	case <-time.After(waitLimit):
		t.Fatal("no answer")
	}
	devs.await(t, "connected d1", "inform refused", "connected d1", "inform refused", "connected d1", "inform d1 1.0.0", "request d1")

	// Presence: the will and the announcement.
	d.publish(t, wire.Presence{Online: false})
	devs.await(t, "connected d1", "inform refused", "connected d1", "inform refused", "connected d1", "inform d1 1.0.0", "request d1",
		"disconnected d1")
}

func TestAStoppedClientLeavesNoSubscriber(t *testing.T) {
	r := newRig(t)
	c := r.dial(t, newDevices(0))
	d := r.device(t)
	if code := d.publish(t, wire.Inform{Modules: map[string]string{"default": "1.0.0"}}); code != 0 {
		t.Fatalf("PUBACK 0x%02x with otter subscribed", code)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Nobody takes uplinks now: the broker says so, and the SDK sends the
	// message again later.
	if code := d.publish(t, wire.Inform{Modules: map[string]string{"default": "1.0.0"}}); code != 0x10 {
		t.Fatalf("PUBACK 0x%02x after otter stopped, want 0x10 (no matching subscribers)", code)
	}
	if err := c.Ready(); err == nil {
		t.Fatal("a closed client says it is ready")
	}
}

// engineStartsLate refuses every message as the engine does before it
// runs, until started is closed.
type engineStartsLate struct {
	*devices
	started chan struct{}
}

func (e engineStartsLate) Inform(ctx context.Context, dev engine.Device, m wire.Inform) (*engine.Answer, error) {
	select {
	case <-e.started:
		return e.devices.Inform(ctx, dev, m)
	default:
		return nil, ota.Errorf(ota.EUNAVAILABLE, "the rollout engine is not running: try again in a moment")
	}
}

// A successor takes over a session the broker kept full of uplinks, while
// its engine waits for the subscription to be confirmed: the uplinks
// waiting for the engine must not hold back the broker's SUBACK, and
// every one reaches the engine once it runs. (bench failover once saw a
// successor that never became ready; this test did not reproduce it.)
func TestQueuedUplinksDoNotHoldBackTheSubscription(t *testing.T) {
	r := newRig(t)
	cfg := brokerclient.Config{URL: r.b.URL(), Username: serviceUser, Password: servicePassword, ClientID: "otter-successor",
		Devices: newDevices(0), Resolver: registry{"demo/d1": true}, Workers: 2}
	first, err := brokerclient.Dial(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Abandon(); err != nil {
		t.Fatal(err)
	}
	d := r.device(t)
	const queued = 40
	for i := range queued {
		d.publish(t, wire.Inform{Modules: map[string]string{"default": fmt.Sprintf("1.0.%d", i)}})
	}

	late := engineStartsLate{devices: newDevices(0), started: make(chan struct{})}
	cfg.Devices = late
	next, err := brokerclient.Dial(testContext(t), cfg)
	if err != nil {
		t.Fatalf("the successor could not subscribe while uplinks waited for its engine: %v", err)
	}
	defer next.Close(context.Background())
	close(late.started)
	deadline := time.Now().Add(waitLimit)
	for {
		late.mu.Lock()
		n := 0
		for _, c := range late.calls {
			if strings.HasPrefix(c, "inform d1 ") {
				n++
			}
		}
		late.mu.Unlock()
		if n == queued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d queued uplinks reached the engine", n, queued)
		}
		select {
		case <-late.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// slowFirstInform holds the inform of version 1.0.0 until another
// device's inform reached the engine.
type slowFirstInform struct {
	*devices
	other chan struct{}
}

func (e slowFirstInform) Inform(ctx context.Context, dev engine.Device, m wire.Inform) (*engine.Answer, error) {
	if m.Modules["default"] == "1.0.0" {
		select {
		case <-e.other:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	a, err := e.devices.Inform(ctx, dev, m)
	if dev.Key == "d2" {
		close(e.other)
	}
	return a, err
}

// A device's reports reach the engine in the order it sent them, however
// long the first one takes, while other devices' reports go on meanwhile:
// an old version's report retried across an upgrade, then the new
// version's, must leave the device on the new version (the cluster test
// once ended with a device the server believed still on 1.0.0).
func TestOneDevicesUplinksKeepTheirOrder(t *testing.T) {
	r := newRig(t)
	if err := r.admin.CreateDevice(testContext(t), brokeradmin.Device{Product: "demo", Key: "d2"}, "secret-d2"); err != nil {
		t.Fatal(err)
	}
	devs := slowFirstInform{devices: newDevices(0), other: make(chan struct{})}
	c, err := brokerclient.Dial(testContext(t), brokerclient.Config{
		URL: r.b.URL(), Username: serviceUser, Password: servicePassword, ClientID: "otter-test",
		Devices: devs, Resolver: registry{"demo/d1": true, "demo/d2": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	d1, d2 := r.device(t), r.deviceNamed(t, "d2")
	d1.publish(t, wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	d1.publish(t, wire.Inform{Modules: map[string]string{"default": "1.1.0"}})
	// The broker hands otter d2's report after both of d1's: by the time
	// it is stored, d1's second report is in otter's hands too.
	d2.publish(t, wire.Inform{Modules: map[string]string{"default": "2.0.0"}})
	devs.await(t, "connected d1", "connected d2", "inform d2 2.0.0", "inform d1 1.0.0", "connected d1", "inform d1 1.1.0")
}
