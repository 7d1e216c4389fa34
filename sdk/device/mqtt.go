package device

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/sdk/wire"
)

// mqttTransport speaks MQTT 5 through autopaho, which reconnects by itself
// with the client's backoff.
type mqttTransport struct {
	cfg            Config
	bo             backoff
	upgrade, reply string // topics to subscribe
	cm             *autopaho.ConnectionManager
}

func newMQTTTransport(cfg Config, bo backoff) *mqttTransport {
	return &mqttTransport{
		cfg:     cfg,
		bo:      bo,
		upgrade: wire.Topic(cfg.Product, cfg.Device, wire.KindUpgrade),
		reply:   wire.Topic(cfg.Product, cfg.Device, wire.KindReply),
	}
}

func (t *mqttTransport) start(ctx context.Context, s sink) error {
	u, err := url.Parse(t.cfg.Broker)
	if err != nil {
		return fmt.Errorf("device: broker URL: %w", err)
	}
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        t.cfg.TLSConfig,
		KeepAlive:                     60,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                20 * time.Second,
		ReconnectBackoff:              t.bo.delay,
		ConnectUsername:               wire.Username(t.cfg.Product, t.cfg.Device),
		ConnectPassword:               []byte(t.cfg.Secret),
		OnConnectionUp:                func(*autopaho.ConnectionManager, *paho.Connack) { s.up() },
		OnConnectionDown:              func() bool { s.down(); return true },
		OnConnectError:                s.connectError,
		ConnectPacketBuilder:          limitReceive,
		// The last will tells a server behind an external broker that the
		// device is gone when its connection ends without a DISCONNECT.
		WillMessage: &paho.WillMessage{Topic: wire.Topic(t.cfg.Product, t.cfg.Device, wire.KindPresence),
			Payload: wire.OfflinePresence(), QoS: 1},
		// A clean stop asks the broker to publish the will all the same
		// (MQTT 5 reason 0x04): the device is offline either way.
		DisconnectPacketBuilder: func() *paho.Disconnect { return &paho.Disconnect{ReasonCode: disconnectWithWill} },
		ClientConfig: paho.ClientConfig{
			ClientID:          t.cfg.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){t.receiver(s)},
		},
	}
	if plainTCP(u) {
		cc.AttemptConnection = dialBuffered
	}
	t.cm, err = autopaho.NewConnection(ctx, cc)
	if err != nil {
		return fmt.Errorf("device: connect to %s: %w", t.cfg.Broker, err)
	}
	return nil
}

// plainTCP reports whether autopaho would dial u as plain TCP without a
// proxy: only then does the client dial itself (dialBuffered).
func plainTCP(u *url.URL) bool {
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp", "":
		return os.Getenv("all_proxy") == ""
	}
	return false
}

// readBufferSize is the read buffer of a plain TCP connection: a few
// acknowledgements or one command fit, and a larger packet is read
// straight into paho's own buffer.
const readBufferSize = 512

// dialBuffered dials the broker over TCP with a read buffer. paho reads
// each packet with three reads (the first byte, the length one byte at a
// time, then the rest) and on a bare TCP connection each is a system
// call; through the buffer a packet, often several, costs one. Writes go
// to the connection as before (one writev a packet).
func dialBuffered(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return conn, nil
	}
	return &bufferedConn{TCPConn: tcp, r: bufio.NewReaderSize(tcp, readBufferSize)}, nil
}

// bufferedConn is a TCP connection whose reads go through a buffer. paho
// reads from one goroutine at a time, so the buffer needs no lock. It
// embeds *net.TCPConn, not net.Conn, so that net.Buffers.WriteTo still
// finds the connection's (unexported) writev method: behind a net.Conn
// interface a packet's header and body went out in two or three write
// calls instead of one writev.
type bufferedConn struct {
	*net.TCPConn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// receiveMaximum is how many unacknowledged QoS 1 messages the broker may
// send the device at once. paho allocates a queue of this size per
// connection, and its default (65535) costs 512 KiB per client; a device
// receives a handful of downlinks at most.
const receiveMaximum = 8

func limitReceive(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
	if cp.Properties == nil {
		cp.Properties = &paho.ConnectProperties{}
	}
	rm := uint16(receiveMaximum)
	cp.Properties.ReceiveMaximum = &rm
	return cp, nil
}

// receiver hands downlinks to s. Messages on other topics are ignored: a
// broker may deliver nothing else under the device's ACL.
func (t *mqttTransport) receiver(s sink) func(paho.PublishReceived) (bool, error) {
	return func(pr paho.PublishReceived) (bool, error) {
		switch pr.Packet.Topic {
		case t.upgrade:
			s.deliver(downlink{kind: wire.KindUpgrade, payload: pr.Packet.Payload})
		case t.reply:
			s.deliver(downlink{kind: wire.KindReply, payload: pr.Packet.Payload})
		}
		return true, nil
	}
}

func (t *mqttTransport) subscribe(ctx context.Context) error {
	sa, err := t.cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: t.upgrade, QoS: 1},
		{Topic: t.reply, QoS: 1},
	}})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for i, r := range sa.Reasons {
		if r >= 0x80 {
			return fmt.Errorf("subscribe: the broker refused subscription %d with reason code 0x%02x", i, r)
		}
	}
	return nil
}

// disconnectWithWill is the MQTT 5 DISCONNECT reason code that asks the
// broker to publish the will.
const disconnectWithWill = 0x04

// noMatchingSubscribers is the PUBACK reason code of an MQTT 5 broker that
// delivered a message to nobody.
const noMatchingSubscribers = 0x10

// send publishes at QoS 1 once a connection is up and returns when the
// broker acknowledges it.
func (t *mqttTransport) send(ctx context.Context, m wire.Message) (*downlink, error) {
	if err := t.cm.AwaitConnection(ctx); err != nil {
		return nil, err
	}
	topic := wire.Topic(t.cfg.Product, t.cfg.Device, m.Kind())
	pr, err := t.cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: wire.Encode(m)})
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", m.Kind(), err)
	}
	if pr != nil && pr.ReasonCode == noMatchingSubscribers {
		// Behind an external broker, no otter replica is subscribed right
		// now: the message went nowhere, so send it again later.
		return nil, fmt.Errorf("publish %s: no server takes it now (the broker answered 0x10, no matching subscribers)", m.Kind())
	}
	if pr != nil && pr.ReasonCode >= 0x80 {
		return nil, fmt.Errorf("publish %s: the broker refused it with reason code 0x%02x", m.Kind(), pr.ReasonCode)
	}
	return nil, nil
}

func (t *mqttTransport) poll(context.Context) (*downlink, error) { return nil, nil }
func (t *mqttTransport) polls() bool                             { return false }

func (t *mqttTransport) stop(ctx context.Context) {
	if t.cm != nil {
		_ = t.cm.Disconnect(ctx)
	}
}
