// Package dynsec provisions otter's device accounts in Mosquitto 2's
// dynamic security plugin, by publishing JSON commands to its control
// topic as an MQTT 5 client.
//
// Every device gets a client (user name {product}/{device}, password its
// secret, textname "otter-device") with two roles: its own,
// "otter-device/{product}/{device}", whose ACLs allow the device's topics
// by name, and the shared "otter-device", which denies everything else.
// One shared role with %u patterns would be smaller, but Mosquitto 2.0's
// dynamic security plugin does not substitute %u or %c at all, and 2.1's
// substitution stops at the "/" inside otter's user names
// (eclipse-mosquitto/mosquitto#2222, #3520).
package dynsec

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	pahosession "github.com/eclipse/paho.golang/paho/session"
)

// The plugin's topics: commands in, responses out (to every subscriber,
// so responses are matched by their correlationData).
const (
	ControlTopic  = "$CONTROL/dynamic-security/v1"
	ResponseTopic = ControlTopic + "/response"
)

// defaultTimeout bounds one batch of commands when the caller's context
// has no deadline. The plugin rewrites its whole file after every command
// (0.17 s with 1,000 devices here, growing with their number; see
// docs/cluster.md), and only then acknowledges the message.
const defaultTimeout = time.Minute

// Config says how to reach the broker as a dynamic security admin: a user
// with a role that may publish to ControlTopic and subscribe to
// ResponseTopic (the "admin" role made by `mosquitto_ctrl dynsec init`).
type Config struct {
	URL      *url.URL // mqtt://host:port, or mqtts:// with TLS
	Username string
	Password string
	TLS      *tls.Config // for mqtts://; nil uses the system roots
	Log      *slog.Logger
}

// Admin sends dynamic security commands over one MQTT connection, which it
// keeps up (reconnecting with backoff) until Close.
type Admin struct {
	cm     *autopaho.ConnectionManager
	cancel context.CancelFunc
	log    *slog.Logger
	prefix string // this connection's part of every correlationData
	seq    atomic.Uint64

	mu      sync.Mutex
	pending map[string]*batch
	link    *link
	fatal   chan error // the first connection's failure, for Dial
}

// link is one connection to the broker: ready is closed once it is
// subscribed to the responses, down when it is lost.
type link struct {
	ready, down chan struct{}
	up          bool
}

func newLink() *link { return &link{ready: make(chan struct{}), down: make(chan struct{})} }

// bind returns a context that ends with ErrConnectionLost when the link
// goes down, so a command does not wait for an answer that cannot come.
func (l *link) bind(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-l.down:
			cancel(ErrConnectionLost)
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// ErrConnectionLost is returned by a command whose connection was lost
// before its answer came: it may or may not have been applied, and may be
// repeated.
var ErrConnectionLost = errors.New("dynsec: connection to the broker lost")

// batch is one published command message waiting for its responses.
type batch struct {
	resp []*response
	left int
	done chan struct{}
}

// Dial connects to the broker and subscribes to the plugin's responses. It
// fails (rather than retrying) when the broker cannot be reached or
// refuses the credentials or the subscription, so a wrong setting is
// reported at start.
func Dial(ctx context.Context, cfg Config) (*Admin, error) {
	if cfg.URL == nil {
		return nil, errors.New("dynsec: no broker URL")
	}
	a := &Admin{log: cfg.Log, prefix: "otter-" + randomHex(6), pending: map[string]*batch{},
		link: newLink(), fatal: make(chan error, 1)}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	life, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(life, a.clientConfig(cfg))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dynsec: connect to %s: %w", cfg.URL.Redacted(), err)
	}
	a.cm, a.cancel = cm, cancel
	select {
	case <-a.current().ready:
		return a, nil
	case err = <-a.fatal:
	case <-ctx.Done():
		err = ctx.Err()
	}
	a.Close()
	return nil, fmt.Errorf("dynsec: connect to %s as %q: %w", cfg.URL.Redacted(), cfg.Username, err)
}

func (a *Admin) clientConfig(cfg Config) autopaho.ClientConfig {
	return autopaho.ClientConfig{
		ServerUrls: []*url.URL{cfg.URL}, TlsCfg: cfg.TLS, KeepAlive: 30,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, 30*time.Second, time.Second, 2),
		ConnectTimeout:                10 * time.Second,
		ConnectUsername:               cfg.Username,
		ConnectPassword:               []byte(cfg.Password),
		OnConnectionUp:                a.connectionUp,
		OnConnectionDown:              a.connectionDown,
		OnConnectError:                a.connectError,
		ClientConfig: paho.ClientConfig{
			ClientID:          a.prefix,
			PacketTimeout:     defaultTimeout,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){a.received},
		},
	}
}

// Close disconnects. Commands waiting for an answer fail.
func (a *Admin) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.cm.Disconnect(ctx)
	a.cancel()
	return err
}

// connectionUp subscribes to the responses again on every connection
// (the session is clean); commands wait until the SUBACK.
func (a *Admin) connectionUp(cm *autopaho.ConnectionManager, _ *paho.Connack) {
	l := a.current()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), defaultTimeout)
		defer cancel()
		_, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: ResponseTopic, QoS: 1}}})
		if err != nil {
			err = fmt.Errorf("subscribe to %s (does the user have the dynamic security admin role?): %w", ResponseTopic, err)
			a.log.Error("dynsec: no responses", "err", err)
			a.fail(err)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if !l.up {
			l.up = true
			close(l.ready)
		}
	}()
}

func (a *Admin) connectionDown() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	close(a.link.down)
	a.link = newLink()
	return true
}

func (a *Admin) connectError(err error) {
	var refused *autopaho.ConnackError
	if errors.As(err, &refused) {
		err = fmt.Errorf("the broker refused the connection with reason 0x%02x (0x86 and 0x87: wrong user name or password): %w",
			refused.ReasonCode, err)
	}
	a.log.Warn("dynsec: cannot connect to the broker", "err", err)
	a.fail(err)
}

// fail hands the first failure to a waiting Dial.
func (a *Admin) fail(err error) {
	select {
	case a.fatal <- err:
	default:
	}
}

func (a *Admin) current() *link {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.link
}

// await returns the connection once it can carry commands.
func (a *Admin) await(ctx context.Context) (*link, error) {
	for {
		l := a.current()
		select {
		case <-l.ready:
			return l, nil
		case <-l.down:
		case <-ctx.Done():
			return nil, fmt.Errorf("dynsec: not connected to the broker: %w", ctx.Err())
		}
	}
}

// do publishes cmds as one message and waits for their responses. It
// returns one error per command (nil, or a *CommandError the plugin
// answered), or an error when the exchange itself failed.
func (a *Admin) do(ctx context.Context, cmds []command) ([]error, error) {
	resp, err := a.exchange(ctx, cmds)
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(cmds))
	for i, r := range resp {
		if r.Error != "" {
			errs[i] = &CommandError{Command: cmds[i].Command, Target: cmds[i].target(), Message: r.Error}
		}
	}
	return errs, nil
}

// exchange publishes cmds as one message and returns their responses, in
// order.
func (a *Admin) exchange(ctx context.Context, cmds []command) ([]*response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	l, err := a.await(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := l.bind(ctx)
	defer cancel(nil)
	id, b := a.register(cmds)
	defer a.unregister(id)
	payload, err := json.Marshal(struct {
		Commands []command `json:"commands"`
	}{cmds})
	if err != nil {
		return nil, fmt.Errorf("dynsec: encode commands: %w", err)
	}
	if _, err := a.cm.Publish(ctx, &paho.Publish{Topic: ControlTopic, QoS: 1, Payload: payload}); err != nil {
		if lost(err) {
			err = ErrConnectionLost
		}
		return nil, fmt.Errorf("dynsec: publish %s: %w", cmds[0].Command, cmp.Or(context.Cause(ctx), err))
	}
	select {
	case <-b.done:
		return b.resp, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("dynsec: no answer to %s: %w", cmds[0].Command, context.Cause(ctx))
	}
}

// lost reports whether a publish failed because the connection was, or
// went, down.
func lost(err error) bool {
	return errors.Is(err, autopaho.ConnectionDownError) || errors.Is(err, pahosession.ErrNoConnection) ||
		errors.Is(err, paho.ErrConnectionLost) || errors.Is(err, paho.ErrNetworkErrorAfterStored)
}

func (a *Admin) register(cmds []command) (string, *batch) {
	id := a.prefix + "-" + strconv.FormatUint(a.seq.Add(1), 10)
	for i := range cmds {
		cmds[i].Correlation = id + "/" + strconv.Itoa(i)
	}
	b := &batch{resp: make([]*response, len(cmds)), left: len(cmds), done: make(chan struct{})}
	a.mu.Lock()
	a.pending[id] = b
	a.mu.Unlock()
	return id, b
}

func (a *Admin) unregister(id string) {
	a.mu.Lock()
	delete(a.pending, id)
	a.mu.Unlock()
}

// received routes the plugin's responses to the batches waiting for them;
// responses to other admins (other otter replicas) are ignored.
func (a *Admin) received(pr paho.PublishReceived) (bool, error) {
	if pr.Packet.Topic != ResponseTopic {
		return false, nil
	}
	var msg struct {
		Responses []response `json:"responses"`
	}
	if err := json.Unmarshal(pr.Packet.Payload, &msg); err != nil {
		a.log.Warn("dynsec: unreadable response", "err", err)
		return true, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range msg.Responses {
		a.deliver(&msg.Responses[i])
	}
	return true, nil
}

func (a *Admin) deliver(r *response) {
	id, n, ok := strings.Cut(r.Correlation, "/")
	b := a.pending[id]
	i, err := strconv.Atoi(n)
	if !ok || b == nil || err != nil || i < 0 || i >= len(b.resp) || b.resp[i] != nil {
		return
	}
	b.resp[i] = r
	if b.left--; b.left == 0 {
		close(b.done)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
