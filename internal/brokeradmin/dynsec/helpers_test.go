package dynsec

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
)

const waitTimeout = 10 * time.Second

// env is a Mosquitto with the dynamic security plugin, otter's admin
// connection to it, and a service client that sees every device topic.
type env struct {
	b     *mosquittotest.Broker
	admin *Admin
}

const (
	serviceUser     = "otter-svc"
	servicePassword = "svc-secret"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	b := mosquittotest.Start(t)
	ctx := testContext(t)
	a, err := Dial(ctx, Config{URL: b.URL(), Username: mosquittotest.AdminUser, Password: mosquittotest.AdminPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.EnsureService(ctx, serviceUser, servicePassword); err != nil {
		t.Fatal(err)
	}
	return &env{b: b, admin: a}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func dev(product, key string) brokeradmin.Device {
	return brokeradmin.Device{Product: product, Key: key}
}

// create provisions devices with the secret "secret-{key}".
func (e *env) create(t *testing.T, devs ...brokeradmin.Device) {
	t.Helper()
	for _, d := range devs {
		if err := e.admin.CreateDevice(testContext(t), d, "secret-"+d.Key); err != nil {
			t.Fatal(err)
		}
	}
}

// mqttClient is an MQTT 5 client with the messages it received.
type mqttClient struct {
	c        *paho.Client
	conn     net.Conn
	received chan *paho.Publish
}

// session asks for a persistent session (clean start off, an expiry),
// and a will.
type session struct {
	clientID string
	persist  bool
	will     string // topic; the payload is "will"
}

// dial connects user; it returns the CONNACK reason code and the client
// (nil when refused).
func (e *env) dial(t *testing.T, user, password string, s session) (byte, *mqttClient) {
	t.Helper()
	nc, err := net.Dial("tcp", e.b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &mqttClient{conn: nc, received: make(chan *paho.Publish, 64)}
	c.c = paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(p paho.PublishReceived) (bool, error) { c.received <- p.Packet; return true, nil }}})
	cp := &paho.Connect{ClientID: s.clientID, CleanStart: !s.persist, KeepAlive: 30,
		Username: user, UsernameFlag: true, Password: []byte(password), PasswordFlag: password != ""}
	if s.will != "" {
		cp.WillMessage = &paho.WillMessage{Topic: s.will, Payload: []byte("will"), QoS: 1}
	}
	if s.persist {
		expiry := uint32(300)
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	ctx := testContext(t)
	ack, err := c.c.Connect(ctx, cp)
	if ack == nil {
		nc.Close()
		t.Fatalf("connect %s: no CONNACK: %v", user, err)
	}
	if err != nil {
		nc.Close()
		return ack.ReasonCode, nil
	}
	t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
	return ack.ReasonCode, c
}

// login connects device d with its test secret, or fails the test.
func (e *env) login(t *testing.T, d brokeradmin.Device, s session) *mqttClient {
	t.Helper()
	return e.mustDial(t, d.Username(), "secret-"+d.Key, s)
}

func (e *env) mustDial(t *testing.T, user, password string, s session) *mqttClient {
	t.Helper()
	code, c := e.dial(t, user, password, s)
	if c == nil {
		t.Fatalf("%s refused with CONNACK 0x%02x", user, code)
	}
	return c
}

// service connects otter's service user, subscribed to every device topic.
func (e *env) service(t *testing.T) *mqttClient {
	t.Helper()
	c := e.mustDial(t, serviceUser, servicePassword, session{})
	if code := c.subscribe(t, "otter/v1/#"); code >= 0x80 {
		t.Fatalf("service subscription refused: 0x%02x", code)
	}
	return c
}

// subscribe subscribes at QoS 1 and returns the SUBACK reason code.
func (c *mqttClient) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	ack, err := c.c.Subscribe(testContext(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if ack == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return ack.Reasons[0]
}

// publish publishes at QoS 1 and returns the PUBACK reason code.
func (c *mqttClient) publish(t *testing.T, topic, payload string) byte {
	t.Helper()
	resp, err := c.c.Publish(testContext(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if resp == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return resp.ReasonCode
}

// next returns the next message the client receives.
func (c *mqttClient) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-c.received:
		return p
	case <-time.After(waitTimeout):
		t.Fatal("no message")
		return nil
	}
}

// expectFirst fails unless the next message is payload on topic. It is
// the barrier that proves absence: QoS 1 messages on one path arrive in
// order, so a message sent earlier that should have been dropped would
// have come first.
func (c *mqttClient) expectFirst(t *testing.T, topic, payload string) {
	t.Helper()
	p := c.next(t)
	if p.Topic != topic || string(p.Payload) != payload {
		t.Fatalf("received %q on %s; want %q on %s first", p.Payload, p.Topic, payload, topic)
	}
}

// awaitClosed fails unless the broker closes the client's connection.
func (c *mqttClient) awaitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-c.c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the connection is still open")
	}
}
