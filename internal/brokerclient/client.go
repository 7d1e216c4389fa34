// Package brokerclient is otter's device transport through an external
// MQTT 5 broker (`otter serve --broker`): an autopaho client that takes
// the devices' uplinks from shared subscriptions, hands each to the
// engine, acknowledges it to the broker only once the engine has stored
// its effect, and publishes the engine's downlinks.
//
// The broker, not otter, checks who may publish where: a device publishes
// only under its own topic tree (docs/cluster.md: otter's dynamic security
// roles do it for Mosquitto), so the topic names the device.
package brokerclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/time/rate"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// Resolver finds a device's id from its keys; the store implements it. An
// unknown device answers an *ota.Error of code ENOTFOUND.
type Resolver interface {
	Credentials(ctx context.Context, product, key string) (ota.DeviceCredentials, error)
}

// Config wires a Client.
type Config struct {
	// URL is the broker: mqtt://host:port, or mqtts://host:port for TLS.
	URL      *url.URL
	Username string
	Password string
	// TLS configures mqtts://; nil uses the system's roots.
	TLS *tls.Config
	// ClientID names this replica's session in the broker. It must be
	// stable across restarts of one replica and differ between replicas:
	// the broker keeps the messages a replica received but did not
	// acknowledge in that session, and delivers them again when the
	// replica comes back under the same id.
	ClientID string
	// Group is the shared subscription group: the replicas of one otter
	// share it, so each uplink goes to one of them. "" means "otter".
	Group string

	Devices  engine.Devices
	Resolver Resolver
	Logger   *slog.Logger
	// Workers bounds the uplinks handled at once; 0 means DefaultWorkers.
	Workers int
	// Metrics counts what the client does; nil counts into series that
	// are not registered anywhere.
	Metrics *Metrics
}

// DefaultWorkers is how many uplinks a replica hands to the engine at once,
// and so how many the broker may have in flight to it: the engine writes
// concurrent messages in one transaction.
const DefaultWorkers = 128

const (
	// sessionExpiry is how long the broker keeps a replica's session
	// after its connection ends without an unsubscribe (a crash): its
	// subscriptions, the messages it did not acknowledge, and its share of
	// the messages published since (Mosquitto 2.0 goes on queueing for an
	// offline member of a shared subscription). A replica back within it
	// under the same client id takes them all; after it they are lost, and
	// new messages go to the other replicas only.
	sessionExpiry = 10 * time.Minute
	// callTimeout bounds one engine or store call.
	callTimeout = 30 * time.Second
	// publishTimeout bounds one downlink publish.
	publishTimeout = 30 * time.Second
	// retryMin and retryMax bound the wait between attempts to store a
	// message while the store is unavailable.
	retryMin, retryMax = 100 * time.Millisecond, 5 * time.Second
	// maxCached bounds the cache of device ids.
	maxCached = 100_000
	logEvery  = 10 * time.Second
)

// Client is the connection of one otter replica to the external broker.
type Client struct {
	cfg    Config
	log    *slog.Logger
	cm     *autopaho.ConnectionManager
	cancel context.CancelFunc

	// work is the context of uplink handling: Close cancels it when the
	// messages in hand cannot be finished in time (they are not
	// acknowledged, so the broker delivers them again).
	work       context.Context
	stopWork   context.CancelFunc
	slots      chan struct{}
	inflight   sync.WaitGroup
	qmu        sync.Mutex
	queues     map[string]*deviceQueue // by device: the messages in hand
	closing    atomic.Bool
	subscribed atomic.Bool // connected and subscribed to the uplinks
	fatal      chan error  // the first connection's failure, for Dial
	up         chan struct{}
	upOnce     sync.Once
	ups        atomic.Int64 // connections made and subscribed
	m          *Metrics

	ids  sync.Map // "{product}/{device}" -> int64
	nids atomic.Int64

	logs rate.Sometimes
}

// Dial connects to the broker and subscribes to the uplinks. It fails,
// rather than retrying, when the broker cannot be reached or refuses the
// credentials or the subscriptions, so that a wrong setting is reported at
// start; once up, the client reconnects by itself with backoff.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.URL == nil || cfg.Devices == nil || cfg.Resolver == nil || cfg.ClientID == "" {
		return nil, errors.New("brokerclient: Config.URL, ClientID, Devices and Resolver are required")
	}
	if cfg.Group == "" {
		cfg.Group = "otter"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics, _ = NewMetrics(nil) // registers nothing, so it cannot fail
	}
	c := &Client{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, slots: make(chan struct{}, cfg.Workers), queues: map[string]*deviceQueue{},
		fatal: make(chan error, 1), up: make(chan struct{}), logs: rate.Sometimes{Interval: logEvery}}
	c.work, c.stopWork = context.WithCancel(context.Background())
	life, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(life, c.clientConfig())
	if err != nil {
		cancel()
		c.stopWork()
		return nil, fmt.Errorf("connect to %s: %w", cfg.URL.Redacted(), err)
	}
	c.cm, c.cancel = cm, cancel
	select {
	case <-c.up:
		return c, nil
	case err = <-c.fatal:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.abort()
	return nil, fmt.Errorf("connect to %s as %q: %w", cfg.URL.Redacted(), cfg.Username, err)
}

func (c *Client) clientConfig() autopaho.ClientConfig {
	return autopaho.ClientConfig{
		ServerUrls: []*url.URL{c.cfg.URL}, TlsCfg: c.cfg.TLS, KeepAlive: 30,
		// The session outlives the connection and the process: what the
		// broker delivered and otter did not acknowledge comes again.
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(sessionExpiry / time.Second),
		ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, 30*time.Second, time.Second, 2),
		ConnectTimeout:                10 * time.Second,
		ConnectUsername:               c.cfg.Username,
		ConnectPassword:               []byte(c.cfg.Password),
		ConnectPacketBuilder:          c.connectPacket,
		OnConnectionUp:                c.connectionUp,
		OnConnectionDown:              c.connectionDown,
		OnConnectError:                c.connectError,
		ClientConfig: paho.ClientConfig{
			ClientID:                   c.cfg.ClientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           10 * time.Millisecond,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){c.received},
		},
	}
}

// connectPacket bounds what the broker sends before otter acknowledges:
// no more messages in flight than workers to handle them.
func (c *Client) connectPacket(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
	if cp.Properties == nil {
		cp.Properties = &paho.ConnectProperties{}
	}
	rm := uint16(min(c.cfg.Workers, 65535))
	cp.Properties.ReceiveMaximum = &rm
	return cp, nil
}

// Filters are the shared subscriptions of a replica in group group: one
// per uplink kind, so that the replicas' own downlinks never come back.
func Filters(group string) []string {
	kinds := append(append([]wire.Kind{}, wire.UplinkKinds...), wire.KindPresence)
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = "$share/" + group + "/" + wire.SubscriptionFilter(k)
	}
	return out
}

// connectionUp subscribes again on every connection: a broker that lost
// the session (restarted without persistence) has forgotten them.
func (c *Client) connectionUp(cm *autopaho.ConnectionManager, ack *paho.Connack) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		var subs []paho.SubscribeOptions
		for _, f := range Filters(c.cfg.Group) {
			subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
		}
		sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		if err == nil {
			for i, r := range sa.Reasons {
				if r >= 0x80 {
					err = fmt.Errorf("the broker refused the subscription to %s with reason 0x%02x (does the user have the otter-service role? see docs/cluster.md)", subs[i].Topic, r)
					break
				}
			}
		}
		if err != nil {
			c.log.Error("broker: cannot subscribe to the device uplinks", "err", err)
			c.fail(err)
			return
		}
		if c.closing.Load() {
			return // Close or Abandon came first: not connected for long
		}
		c.subscribed.Store(true)
		c.m.connected.Set(1)
		if c.ups.Add(1) > 1 {
			c.m.reconnects.Inc()
		}
		c.log.Info("broker: connected", "broker", c.cfg.URL.Redacted(), "client_id", c.cfg.ClientID, "session_present", ack.SessionPresent)
		c.upOnce.Do(func() { close(c.up) })
	}()
}

func (c *Client) connectionDown() bool {
	c.subscribed.Store(false)
	// A closing client says so in abort, before the next term's client
	// connects: a late call here must not clear that one's gauge.
	if !c.closing.Load() {
		c.m.connected.Set(0)
		c.log.Warn("broker: connection lost; reconnecting")
	}
	return true
}

func (c *Client) connectError(err error) {
	var refused *autopaho.ConnackError
	if errors.As(err, &refused) {
		err = fmt.Errorf("the broker refused the connection with reason 0x%02x (0x86 and 0x87: wrong user name or password): %w",
			refused.ReasonCode, err)
	}
	c.logs.Do(func() { c.log.Warn("broker: cannot connect", "broker", c.cfg.URL.Redacted(), "err", err) })
	c.fail(err)
}

func (c *Client) fail(err error) {
	select {
	case c.fatal <- err:
	default:
	}
}

// Ready reports why the client cannot take uplinks now, or nil.
func (c *Client) Ready() error {
	if !c.subscribed.Load() {
		return fmt.Errorf("not connected to the MQTT broker %s", c.cfg.URL.Redacted())
	}
	return nil
}

// Close stops taking uplinks and disconnects. It unsubscribes first, so
// that the broker sends this replica nothing more, then waits (until ctx
// ends) for the uplinks in hand to be stored and acknowledged; those it
// cannot finish stay unacknowledged in the session, and the broker
// delivers them again when a replica with this client id connects.
func (c *Client) Close(ctx context.Context) error {
	c.closing.Store(true)
	if c.subscribed.Swap(false) {
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.cm.Unsubscribe(uctx, &paho.Unsubscribe{Topics: Filters(c.cfg.Group)})
		cancel()
		if err != nil {
			c.log.Warn("broker: unsubscribe at shutdown", "err", err)
		}
	}
	drained := make(chan struct{})
	go func() { c.inflight.Wait(); close(drained) }()
	select {
	case <-drained:
		// paho sends the acknowledgements in batches every few
		// milliseconds; one that does not go out before the disconnect
		// only means a harmless second delivery.
	case <-ctx.Done():
		c.stopWork()
		<-drained
	}
	return c.abort()
}

// Abandon disconnects at once, for a replica that lost the lead: it keeps
// the subscriptions in the session and acknowledges nothing more, so the
// broker keeps the uplinks in hand and those that come meanwhile for the
// next leader, which connects under the same client id. It returns when
// the connection is gone and no uplink is being handled any more.
func (c *Client) Abandon() error {
	c.closing.Store(true)
	c.subscribed.Store(false)
	c.stopWork()
	err := c.abort() // after it paho hands over no more messages
	c.inflight.Wait()
	return err
}

func (c *Client) abort() error {
	c.stopWork()
	c.subscribed.Store(false)
	defer c.m.connected.Set(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.cm.Disconnect(ctx)
	c.cancel()
	return err
}
