package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// External broker tests: a real Mosquitto 2 with the dynamic security
// plugin (mosquittotest), otter on PostgreSQL as its client.

// clusterDB returns a fresh PostgreSQL schema. An external broker needs
// PostgreSQL, so without OTTER_TEST_POSTGRES_URL (the README's SQLite run,
// and .ci/run's first pass) the test is skipped; .ci/run's PostgreSQL pass
// sets it and runs these tests, and there a database that does not answer
// fails the test.
func clusterDB(t *testing.T) string {
	t.Helper()
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skip("an external broker needs PostgreSQL: set " + storetest.PostgresEnv)
	}
	return storetest.PostgresURL(t, base) // fails when the server does not answer
}

// brokerURL is the --broker URL of b with the plugin admin's credentials.
func brokerURL(b *mosquittotest.Broker) string {
	return "mqtt://" + mosquittotest.AdminUser + ":" + mosquittotest.AdminPassword + "@" + b.Addr
}

func randomID(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// startClustered starts otter on PostgreSQL as a client of broker b, with
// otter keeping the device accounts in b's dynamic security plugin.
func startClustered(t *testing.T, b *mosquittotest.Broker, db string) *otter {
	t.Helper()
	return startIn(t, t.TempDir(), db, func(c *server.Config) {
		c.Broker = "mqtt://" + b.Addr
		c.BrokerUsername, c.BrokerPassword = mosquittotest.AdminUser, mosquittotest.AdminPassword
		c.BrokerAdmin = server.BrokerAdminDynsec
		c.BrokerClientID = randomID("otter-test-")
	})
}

func TestSDKDevicesUpgradeThroughAnExternalBroker(t *testing.T) {
	b := mosquittotest.Start(t)
	o := startClustered(t, b, clusterDB(t))
	if !strings.HasPrefix(o.srv.MQTTURL(), "mqtt://"+b.Addr) {
		t.Fatalf("MQTTURL %q, want the external broker mqtt://%s", o.srv.MQTTURL(), b.Addr)
	}
	ctx := o.ctx()
	fleetCtx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	fw, _ := o.firmware("demo", "1.1.0", 64<<10)
	fleet := o.fleet(fleetCtx, "demo", 5, nil) // created through the API: their broker accounts with them
	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	done := o.waitTask(ctx, task.ID, client.TaskCompleted)
	if done.Counts[client.JobSucceeded] != 5 {
		t.Fatalf("counts %v, want 5 succeeded", done.Counts)
	}
	online := true
	o.eventually(func() bool {
		n := 0
		for _, err := range o.api.AllDevices(ctx, client.DeviceFilter{Product: "demo", Online: &online}, client.ListOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n == 5
	}, "the five devices to be online")

	// A device that stops cleanly says it goes offline itself.
	fleet.Stop(stopFleet)
	offline := false
	o.eventually(func() bool {
		n := 0
		for _, err := range o.api.AllDevices(ctx, client.DeviceFilter{Product: "demo", Online: &offline}, client.ListOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n == 5
	}, "the five stopped devices to be offline")
}

// extDevice is a bare MQTT 5 device at the external broker.
type extDevice struct {
	t        *testing.T
	c        *paho.Client
	conn     net.Conn
	topic    func(wire.Kind) string
	received chan *paho.Publish
}

// dialExt connects product/key at b with the protocol's last will.
func dialExt(t *testing.T, b *mosquittotest.Broker, product, key, secret string) *extDevice {
	t.Helper()
	conn, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	d := &extDevice{t: t, conn: conn, received: make(chan *paho.Publish, 16),
		topic: func(k wire.Kind) string { return wire.Topic(product, key, k) }}
	d.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { d.received <- pr.Packet; return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := d.c.Connect(ctx, &paho.Connect{
		ClientID: "ext-" + key, CleanStart: true, KeepAlive: 30,
		Username: wire.Username(product, key), UsernameFlag: true, Password: []byte(secret), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: d.topic(wire.KindPresence), Payload: wire.OfflinePresence(), QoS: 1},
	})
	if err != nil {
		code := byte(0)
		if ack != nil {
			code = ack.ReasonCode
		}
		t.Fatalf("connect %s/%s: 0x%02x %v", product, key, code, err)
	}
	t.Cleanup(func() { conn.Close() })
	sa, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: d.topic(wire.KindUpgrade), QoS: 1}, {Topic: d.topic(wire.KindReply), QoS: 1}}})
	if err != nil || sa.Reasons[0] >= 0x80 || sa.Reasons[1] >= 0x80 {
		t.Fatalf("subscribe: %v %v", sa, err)
	}
	return d
}

// publish sends m at QoS 1 and returns the broker's PUBACK reason code.
func (d *extDevice) publish(m wire.Message) byte {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := d.c.Publish(ctx, &paho.Publish{Topic: d.topic(m.Kind()), QoS: 1, Payload: wire.Encode(m)})
	if err != nil {
		d.t.Fatalf("publish %s: %v", m.Kind(), err)
	}
	return pr.ReasonCode
}

// next returns the next downlink.
func (d *extDevice) next() *paho.Publish {
	d.t.Helper()
	select {
	case p := <-d.received:
		return p
	case <-time.After(30 * time.Second):
		d.t.Fatal("no downlink")
		return nil
	}
}

func (o *otter) device(product, key string) *client.Device {
	o.t.Helper()
	d, err := o.api.Device(o.ctx(), product, key)
	if err != nil {
		o.t.Fatal(err)
	}
	return d
}

func TestAWillTakesADeviceOffline(t *testing.T) {
	b := mosquittotest.Start(t)
	o := startClustered(t, b, clusterDB(t))
	if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	secrets := o.devices("d1")
	d := dialExt(t, b, "demo", "d1", secrets["d1"])
	d.publish(wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	o.eventually(func() bool { return o.device("demo", "d1").Online }, "d1 to be online after its inform")

	// The connection dies without a DISCONNECT: Mosquitto publishes the will.
	d.conn.Close()
	o.eventually(func() bool { return !o.device("demo", "d1").Online }, "d1 to be offline after its will")
	if dev := o.device("demo", "d1"); dev.Versions["default"] != "1.0.0" || dev.LastSeen == nil {
		t.Fatalf("d1 after its will: %+v", dev)
	}

	// A malformed message is answered on the device's reply topic, as by the
	// embedded broker.
	d = dialExt(t, b, "demo", "d1", secrets["d1"])
	d.publish(wire.Progress{Job: "999999", State: "downloading"})
	if p := d.next(); p.Topic != d.topic(wire.KindReply) || !strings.Contains(string(p.Payload), wire.CodeUnknownJob) {
		t.Fatalf("got %s %s, want an unknown_job reply", p.Topic, p.Payload)
	}
}

func TestExternalBrokerSettingsAreCheckedAtStart(t *testing.T) {
	dead := freeAddr(t) // nothing listens there
	cases := []struct {
		name, db, broker, want string
	}{
		{"sqlite", "", "mqtt://127.0.0.1:1883", "--broker needs --db postgres://"},
		{"not mqtt", "postgres", "http://127.0.0.1:1883", "want mqtt://host:port or mqtts://host:port"},
		{"no port", "postgres", "mqtt://127.0.0.1", "want mqtt://host:port"},
		{"unreachable", "postgres", "mqtt://" + dead, "--broker mqtt://" + dead},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := ""
			if c.db != "" {
				db = clusterDB(t)
			}
			cfg := server.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", DBURL: db, Broker: c.broker,
				Logger: slog.New(slog.DiscardHandler)}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := server.Start(ctx, cfg)
			if err == nil {
				s.Close()
				t.Fatalf("started with --broker %s", c.broker)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
	// Wrong credentials name the flag and the refusal.
	b := mosquittotest.Start(t)
	u, _ := url.Parse("mqtt://" + b.Addr)
	cfg := server.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", DBURL: clusterDB(t), Broker: u.String(),
		BrokerUsername: "otter", BrokerPassword: "wrong", Logger: slog.New(slog.DiscardHandler)}
	s, err := server.Start(context.Background(), cfg)
	if err == nil {
		s.Close()
		t.Fatal("started with wrong broker credentials")
	}
	if !strings.Contains(err.Error(), "--broker") || !strings.Contains(err.Error(), "wrong user name or password") {
		t.Fatalf("error %q does not name --broker and the refused credentials", err)
	}
}

func TestOtterIsNotReadyWhileTheBrokerIsGoneAndResumesAfter(t *testing.T) {
	b := mosquittotest.Start(t)
	o := startClustered(t, b, clusterDB(t))
	ready := func() int {
		resp, err := http.Get(o.srv.HTTPURL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("/readyz %d with the broker up", code)
	}
	if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	secrets := o.devices("d1")

	b.Kill()
	o.eventually(func() bool { return ready() == http.StatusServiceUnavailable }, "/readyz to say not ready")
	b.Resume(t) // without persistence: otter's session is gone, and otter subscribes again
	o.eventually(func() bool { return ready() == http.StatusOK }, "/readyz to say ready again")

	d := dialExt(t, b, "demo", "d1", secrets["d1"])
	d.publish(wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	o.eventually(func() bool { return o.device("demo", "d1").Versions["default"] == "1.0.0" }, "d1's inform after the broker came back")
}
