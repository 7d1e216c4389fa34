package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

const waitTimeout = 10 * time.Second

// call is one call the broker made to the engine.
type call struct {
	op  string // Connected, Disconnected, inform, request, confirm, progress, poll
	dev engine.Device
	msg wire.Message
}

// fakeDevices records the broker's calls; handle, when set, decides the
// answer of each (it may block).
type fakeDevices struct {
	mu     sync.Mutex
	calls  []call
	signal chan struct{}
	handle func(c call) (*engine.Answer, error)
}

func newFakeDevices() *fakeDevices { return &fakeDevices{signal: make(chan struct{}, 1)} }

func (f *fakeDevices) setHandle(h func(c call) (*engine.Answer, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handle = h
}

func (f *fakeDevices) record(c call) (*engine.Answer, error) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	h := f.handle
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
	if h != nil {
		return h(c)
	}
	return nil, nil
}

func (f *fakeDevices) Connected(_ context.Context, d engine.Device) error {
	_, err := f.record(call{op: "Connected", dev: d})
	return err
}

func (f *fakeDevices) Disconnected(_ context.Context, d engine.Device) error {
	_, err := f.record(call{op: "Disconnected", dev: d})
	return err
}

func (f *fakeDevices) Inform(_ context.Context, d engine.Device, m wire.Inform) (*engine.Answer, error) {
	return f.record(call{op: "inform", dev: d, msg: m})
}

func (f *fakeDevices) Request(_ context.Context, d engine.Device, m wire.Request) (*engine.Answer, error) {
	return f.record(call{op: "request", dev: d, msg: m})
}

func (f *fakeDevices) Confirm(_ context.Context, d engine.Device, m wire.Confirm) (*engine.Answer, error) {
	return f.record(call{op: "confirm", dev: d, msg: m})
}

func (f *fakeDevices) Progress(_ context.Context, d engine.Device, m wire.Progress) (*engine.Answer, error) {
	return f.record(call{op: "progress", dev: d, msg: m})
}

// Poll completes the engine's contract. Only HTTP devices poll, so the
// broker never calls it; a call would show in the recorded calls.
func (f *fakeDevices) Poll(_ context.Context, d engine.Device) (*engine.Answer, error) {
	return f.record(call{op: "poll", dev: d})
}

func (f *fakeDevices) snapshot() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// waitFor waits until cond holds for the recorded calls.
func (f *fakeDevices) waitFor(t *testing.T, what string, cond func([]call) bool) []call {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		if calls := f.snapshot(); cond(calls) {
			return calls
		}
		select {
		case <-f.signal:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; calls: %v", what, f.snapshot())
		}
	}
}

// ops lists the ops of calls about device key.
func ops(calls []call, key string) []string {
	var out []string
	for _, c := range calls {
		if c.dev.Key == key {
			out = append(out, c.op)
		}
	}
	return out
}

func count(calls []call, op, key string) int {
	n := 0
	for _, c := range calls {
		if c.op == op && c.dev.Key == key {
			n++
		}
	}
	return n
}

// env is a running broker on a real store with devices "a" and "b" of
// product "p".
type env struct {
	b       *Broker
	st      store.Store
	devices *fakeDevices
	secrets map[string]string
	ids     map[string]int64
	reg     *prometheus.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{st: storetest.Open(t), devices: newFakeDevices(), secrets: map[string]string{},
		ids: map[string]int64{}, reg: prometheus.NewRegistry()}
	e.createDevices(t, "a", "b")
	e.b = startBroker(t, Config{Addr: "127.0.0.1:0", Devices: e.devices, Credentials: e.st, Metrics: e.reg})
	return e
}

func (e *env) createDevices(t *testing.T, keys ...string) {
	t.Helper()
	ctx := context.Background()
	if err := e.st.CreateProduct(ctx, &ota.Product{Key: "p", Name: "P"}); err != nil {
		t.Fatal(err)
	}
	var news []store.NewDevice
	for _, k := range keys {
		s, err := credential.NewDeviceSecret()
		if err != nil {
			t.Fatal(err)
		}
		e.secrets[k] = s
		news = append(news, store.NewDevice{Product: "p", Key: k, SecretHash: credential.Hash(s)})
	}
	devs, err := e.st.CreateDevices(ctx, news)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		e.ids[d.Key] = d.ID
	}
}

func (e *env) dev(key string) engine.Device {
	return engine.Device{ID: e.ids[key], Product: "p", Key: key}
}

// startBroker starts a broker whose log is shown when the test fails.
func startBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		if t.Failed() {
			t.Logf("broker log:\n%s", logs.String())
		}
	})
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// device is an MQTT 5 device client (paho) with the messages it received.
type device struct {
	c        *paho.Client
	received chan *paho.Publish
}

// connectOpts tune a test connection.
type connectOpts struct {
	clientID string
	user     string
	password string
	will     *paho.WillMessage
}

// dial connects an MQTT 5 client; it returns the CONNACK reason code and
// the client (nil when refused).
func dial(t *testing.T, addr net.Addr, o connectOpts) (byte, *device) {
	t.Helper()
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return handshake(t, nc, o)
}

func handshake(t *testing.T, nc net.Conn, o connectOpts) (byte, *device) {
	t.Helper()
	d := &device{received: make(chan *paho.Publish, 16)}
	d.c = paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			d.received <- p.Packet
			return true, nil
		}},
	})
	if o.clientID == "" {
		o.clientID = fmt.Sprintf("test-%p", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ack, err := d.c.Connect(ctx, &paho.Connect{
		ClientID: o.clientID, CleanStart: true, KeepAlive: 30, WillMessage: o.will,
		Username: o.user, UsernameFlag: o.user != "", Password: []byte(o.password), PasswordFlag: o.password != "",
	})
	if ack == nil {
		nc.Close()
		t.Fatalf("connect %s: no CONNACK: %v", o.user, err)
	}
	if err != nil {
		nc.Close()
		return ack.ReasonCode, nil
	}
	t.Cleanup(func() { d.c.Disconnect(&paho.Disconnect{}) })
	return ack.ReasonCode, d
}

// connect connects device key with its secret, or fails the test.
func (e *env) connect(t *testing.T, key, clientID string) *device {
	t.Helper()
	code, d := dial(t, e.b.Addr(), connectOpts{clientID: clientID, user: "p/" + key, password: e.secrets[key]})
	if d == nil {
		t.Fatalf("device %s refused with CONNACK 0x%02x", key, code)
	}
	return d
}

// subscribe subscribes to filter and returns the SUBACK reason code.
func (d *device) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ack, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if ack == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return ack.Reasons[0]
}

// publish publishes at QoS 1 and returns the PUBACK reason code, or an
// error when no PUBACK came.
func (d *device) publish(topic string, payload []byte) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	r, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if r == nil {
		if err == nil {
			err = errors.New("no PUBACK")
		}
		return 0, err
	}
	return r.ReasonCode, nil
}

// next returns the next message the device receives.
func (d *device) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-d.received:
		return p
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a message")
		return nil
	}
}

// reply returns the next message, which must be a Reply on topic.
func (d *device) reply(t *testing.T, topic string) wire.Reply {
	t.Helper()
	p := d.next(t)
	if p.Topic != topic {
		t.Fatalf("got a message on %s, want %s", p.Topic, topic)
	}
	r, err := wire.DecodeReply(p.Payload)
	if err != nil {
		t.Fatalf("reply %s: %v", p.Payload, err)
	}
	return r
}

// raw is a hand-written MQTT 3.1.1 client: it shows that 3.1.1 devices
// work and sees exactly which packets the broker sends.
type raw struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t *testing.T, addr net.Addr) *raw {
	t.Helper()
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &raw{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func (c *raw) write(typ byte, body []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(packet(typ, body)); err != nil {
		c.t.Fatal(err)
	}
}

// packet encodes an MQTT packet: type byte, remaining length, body.
func packet(typ byte, body []byte) []byte {
	b := []byte{typ}
	for n := len(body); ; {
		digit := byte(n % 128)
		n /= 128
		if n > 0 {
			digit |= 0x80
		}
		b = append(b, digit)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

// read returns the next packet's type byte and body; io.EOF when the broker
// closed the connection.
func (c *raw) read() (byte, []byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	typ, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mult
		mult *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(c.r, body)
	return typ, body, err
}

func (c *raw) mustRead(want byte) []byte {
	c.t.Helper()
	typ, body, err := c.read()
	if err != nil {
		c.t.Fatalf("want packet 0x%02x: %v", want, err)
	}
	if typ&0xf0 != want {
		c.t.Fatalf("got packet 0x%02x, want 0x%02x", typ, want)
	}
	return body
}

// connect sends an MQTT 3.1.1 CONNECT (clean session) and returns the
// CONNACK return code.
func (c *raw) connect(clientID, user, password string) byte {
	c.t.Helper()
	c.write(0x10, connectBody(clientID, user, password))
	ack := c.mustRead(0x20)
	if len(ack) != 2 {
		c.t.Fatalf("CONNACK body %x", ack)
	}
	return ack[1]
}

// connectBody is the body of an MQTT 3.1.1 CONNECT with a clean session.
func connectBody(clientID, user, password string) []byte {
	body := append(mqttString("MQTT"), 4, 0xc2, 0, 30) // level 4; user, password, clean; keepalive 30 s
	body = append(body, mqttString(clientID)...)
	body = append(body, mqttString(user)...)
	return append(body, mqttString(password)...)
}

// publish1 sends a QoS 1 PUBLISH with packet id 1.
func (c *raw) publish1(topic string, payload []byte) {
	c.t.Helper()
	body := append(mqttString(topic), 0, 1)
	c.write(0x32, append(body, payload...))
}

// subscribe returns the SUBACK return code of one filter.
func (c *raw) subscribe(filter string) byte {
	c.t.Helper()
	body := append([]byte{0, 7}, mqttString(filter)...)
	c.write(0x82, append(body, 1))
	ack := c.mustRead(0x90)
	if len(ack) != 3 || ack[0] != 0 || ack[1] != 7 {
		c.t.Fatalf("SUBACK body %x", ack)
	}
	return ack[2]
}
