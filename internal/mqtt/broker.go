// Package mqtt is otter's embedded MQTT broker (mochi-mqtt): it
// authenticates devices at CONNECT against the store, confines each device
// to its own topic tree, hands uplink messages to the rollout engine before
// acknowledging them, tracks which devices are connected, and delivers the
// engine's downlink messages.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/listenaddr"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// Credentials looks up what a device login is checked against; the store
// implements it. A device that does not exist answers an *ota.Error of code
// ENOTFOUND.
type Credentials interface {
	Credentials(ctx context.Context, product, key string) (ota.DeviceCredentials, error)
}

// Config wires a Broker.
type Config struct {
	// Addr is the TCP listen address, e.g. ":1883" or "127.0.0.1:0".
	Addr string
	// TLSAddr, when set, is a second listen address for MQTT over TLS,
	// using the certificate and key in TLSCertFile and TLSKeyFile (PEM).
	TLSAddr     string
	TLSCertFile string
	TLSKeyFile  string

	Devices     engine.Devices
	Credentials Credentials
	// Logger receives the broker's own log lines, and mochi's from warn up.
	Logger *slog.Logger
	// Metrics registers the broker's metrics; nil leaves them unregistered.
	Metrics prometheus.Registerer
	// Secrets opens the sealed secrets EnOS logins are checked against;
	// nil refuses every EnOS login.
	Secrets *credential.Box
	// EnOSClockSkew is how far an EnOS login's timestamp may be from the
	// server's clock, either way; 0 means DefaultEnOSClockSkew.
	EnOSClockSkew time.Duration
	// MaxConnectionsPerDevice bounds the connections one device holds at
	// once; more are refused at CONNECT. 0 means
	// DefaultMaxConnectionsPerDevice.
	MaxConnectionsPerDevice int
}

// Limits of the broker, chosen for a large fleet of mostly idle devices.
const (
	// connectTimeout bounds how long a new connection may take to send its
	// CONNECT (and finish TLS): idle sockets must not pile up.
	connectTimeout = 10 * time.Second
	// callTimeout bounds one call to the engine or the store from a hook.
	callTimeout = 30 * time.Second
	// maxPacketSize is larger than any protocol message, so that a message
	// over wire.MaxMessageSize still arrives and gets a too_large reply;
	// larger packets close the connection.
	maxPacketSize = 64 << 10
	// messageExpiry bounds how long a downlink waits for an offline device
	// with a persistent session: the engine sends commands again anyway,
	// with fresh download URLs.
	messageExpiry = 15 * time.Minute
	// sessionExpiry bounds how long a persistent session outlives its
	// connection.
	sessionExpiry = 24 * time.Hour
)

// Broker is the embedded MQTT broker. Its Send method delivers the
// engine's downlink messages.
type Broker struct {
	cfg          Config
	log          *slog.Logger
	srv          *mochi.Server
	ln           net.Listener
	tlsLn        net.Listener
	metrics      *metrics
	presence     *presence
	sessions     *sessions
	limit        *connLimit
	refused      rate.Sometimes // log lines about refused connections
	presenceLogs rate.Sometimes // log lines about presence the engine did not record

	enos *enosJobs // the last upgrade each EnOS device was sent

	base      context.Context // parent of every call from a hook
	startOnce sync.Once
	closeOnce sync.Once
}

// New listens on the configured addresses and prepares the broker; Start
// begins serving. A taken port is reported with the flag that changes it.
func New(cfg Config) (*Broker, error) {
	if cfg.Devices == nil || cfg.Credentials == nil {
		return nil, errors.New("mqtt: Config.Devices and Config.Credentials are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EnOSClockSkew <= 0 {
		cfg.EnOSClockSkew = DefaultEnOSClockSkew
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, presence: newPresence(), sessions: newSessions(), enos: newEnOSJobs(),
		limit: newConnLimit(cfg.MaxConnectionsPerDevice), base: context.Background(),
		refused: rate.Sometimes{Interval: logInterval}, presenceLogs: rate.Sometimes{Interval: logInterval}}
	if err := b.open(); err != nil {
		b.closeListeners()
		return nil, err
	}
	return b, nil
}

// open opens the listeners, then registers the metrics and makes the mochi
// server.
func (b *Broker) open() (err error) {
	if b.ln, err = listen("--mqtt", b.cfg.Addr); err != nil {
		return err
	}
	if b.cfg.TLSAddr != "" {
		if b.tlsLn, err = listenTLS(b.cfg); err != nil {
			return err
		}
	}
	if b.metrics, err = newMetrics(b.cfg.Metrics); err != nil {
		return err
	}
	return b.newServer()
}

func (b *Broker) newServer() error {
	b.srv = mochi.New(serverOptions(b.log))
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return fmt.Errorf("mqtt: add hook: %w", err)
	}
	if err := b.srv.AddListener(newListener("tcp", b.ln, b.log, b.disconnectClients)); err != nil {
		return fmt.Errorf("mqtt: add listener: %w", err)
	}
	if b.tlsLn != nil {
		if err := b.srv.AddListener(newListener("tls", b.tlsLn, b.log, b.disconnectClients)); err != nil {
			return fmt.Errorf("mqtt: add TLS listener: %w", err)
		}
	}
	return nil
}

// Per-client sizes, chosen for a large fleet of mostly idle devices (what
// an idle device costs, and where it goes: BENCHMARKS.md).
const (
	// readBufferSize is each client's read buffer, held for the whole
	// connection: an idle device sends a 2-byte PINGREQ, and a protocol
	// message fits in a few hundred bytes; a larger packet is read
	// straight into its own slice past the buffer.
	readBufferSize = 512
	// writesPending is each client's outbound queue (8 bytes a slot, made
	// at CONNECT). otter sends a device a reply per uplink, a command or
	// two, and at most maxHeld commands at once when it subscribes; the
	// client's writer empties the queue as fast as its socket takes them.
	// A downlink that finds it full is dropped (and logged), and the
	// engine sends commands again.
	writesPending = 2 * maxHeld
)

// serverOptions sizes mochi for many idle clients: a short write queue and
// small buffers per client, a bounded in-flight window, and bounded packet
// sizes, message and session lifetimes.
func serverOptions(log *slog.Logger) *mochi.Options {
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = writesPending
	caps.MaximumInflight = 64
	caps.ReceiveMaximum = 32
	caps.MaximumPacketSize = maxPacketSize
	caps.MaximumMessageExpiryInterval = int64(messageExpiry / time.Second)
	caps.MaximumSessionExpiryInterval = uint32(sessionExpiry / time.Second)
	// Aliases are kept per client; a small maximum bounds that memory.
	caps.TopicAliasMaximum = 16
	return &mochi.Options{
		Capabilities: caps,
		// Only a threshold: mochi buffers writes only while its queue is
		// not empty, and frees the buffer once flushed.
		ClientNetWriteBufferSize: 2 << 10,
		ClientNetReadBufferSize:  readBufferSize,
		InlineClient:             true,
		SysTopicResendInterval:   60, // nobody may read $SYS; keep it cheap
		Logger:                   mochiLogger(log),
	}
}

func listen(flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s is already in use by another program (Mosquitto?): choose another address with %s (for example %s %s): %w", addr, flag, flag, listenaddr.Next(addr, ":1884"), err)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", addr, flag, err)
	}
	return ln, nil
}

func listenTLS(cfg Config) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("MQTT over TLS (--mqtt-tls %s): load certificate %q and key %q: %w", cfg.TLSAddr, cfg.TLSCertFile, cfg.TLSKeyFile, err)
	}
	ln, err := listen("--mqtt-tls", cfg.TLSAddr)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// Start begins accepting devices. ctx carries values (not cancellation)
// into every engine and store call the broker makes; stop the broker with
// Close, which first lets every connection report its disconnection.
func (b *Broker) Start(ctx context.Context) error {
	var err error
	b.startOnce.Do(func() {
		b.base = context.WithoutCancel(ctx)
		if err = b.srv.Serve(); err != nil {
			err = fmt.Errorf("mqtt: serve: %w", err)
		}
	})
	return err
}

// Addr returns the address the TCP listener is bound to (the real port
// when Config.Addr asked for port 0).
func (b *Broker) Addr() net.Addr { return b.ln.Addr() }

// TLSAddr returns the address of the TLS listener, or nil without one.
func (b *Broker) TLSAddr() net.Addr {
	if b.tlsLn == nil {
		return nil
	}
	return b.tlsLn.Addr()
}

// Close disconnects every device, waits until each disconnection has been
// reported to the engine, and stops listening.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		if err := b.srv.Close(); err != nil {
			b.log.Warn("mqtt: close broker", "err", err)
		}
		b.closeListeners()
	})
	return nil
}

func (b *Broker) closeListeners() {
	for _, ln := range []net.Listener{b.ln, b.tlsLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// Send publishes payload on the downlink topic of kind kind of one device,
// at QoS 1. It implements the engine's Downlink: it never blocks on the
// network, and a device that is not connected (or whose queue is full)
// simply misses the message; the engine sends commands again.
func (b *Broker) Send(product, device, kind string, payload []byte) {
	k := wire.Kind(kind)
	if !k.Downlink() {
		b.log.Error("mqtt: not a downlink kind; message dropped", "kind", kind, "product", product, "device", device)
		return
	}
	if k == wire.KindUpgrade {
		b.sessions.hold(wire.Username(product, device), payload)
	}
	b.publish(wire.Topic(product, device, k), k, payload)
	if k == wire.KindUpgrade && b.sessions.speaksEnOS(wire.Username(product, device)) {
		b.sendEnOSUpgrade(product, device, payload)
	}
}

func (b *Broker) publish(topic string, k wire.Kind, payload []byte) {
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		b.log.Warn("mqtt: publish downlink", "topic", topic, "err", err)
		return
	}
	b.metrics.downlinks.WithLabelValues(string(k)).Inc()
}

// disconnectClients sends DISCONNECT (server shutting down) to the clients
// of one listener; see listener.
func (b *Broker) disconnectClients(listener string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// call returns the context of one engine or store call made from a hook.
func (b *Broker) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.base, callTimeout)
}

// DisconnectAll sends DISCONNECT (server shutting down) to every client,
// keeping the listeners open: a replica that stops scheduling sends its
// devices to reconnect, to the replica that schedules.
func (b *Broker) DisconnectAll() {
	for _, cl := range b.srv.Clients.GetAll() {
		if !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
