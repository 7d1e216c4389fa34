package device

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

// Errors returned by Client methods.
var (
	// ErrNoUpgrade means the server has no upgrade for the requested
	// module; the error also carries the server's message.
	ErrNoUpgrade = errors.New("no upgrade available")
	// ErrBusy means an upgrade is already in progress on this device.
	ErrBusy = errors.New("an upgrade is already in progress")
	// ErrNotRunning means the client is not connected: Run is not running.
	ErrNotRunning = errors.New("the client is not running")
)

// Client connects a device to otter and carries out its upgrades. Create
// it with New, then call Run; Request and Inform may be called while Run
// runs.
type Client struct {
	cfg Config
	log *slog.Logger
	bo  backoff
	tr  transport

	upCh chan struct{} // a connection came up (buffered: one is enough)
	// ready closes once the current connection has subscribed to the
	// device's downlinks; a Request waits for it, since an answer sent
	// before the subscription would be lost.
	ready chan struct{}

	mu      sync.Mutex
	st      state
	cancel  context.CancelCauseFunc // cancels the running job; nil when none runs
	runCtx  context.Context         // Run's context; nil when Run is not running
	jobs    sync.WaitGroup
	waiter  chan downlink // answer to the Request in flight
	request sync.Mutex    // one Request at a time
	// inform makes reading the versions and sending them one step: two
	// informs in flight at once (the one of a reconnect, retried, and the
	// one after a reboot) could otherwise reach the server in the other
	// order than their versions were read, the old version last.
	inform sync.Mutex
}

// New checks cfg and returns a client. It does not connect: Run does.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, upCh: make(chan struct{}, 1), ready: make(chan struct{})}
	c.bo = backoff{base: cfg.RetryBase, cap: cfg.RetryCap, rand: cfg.Rand}
	if cfg.Broker != "" {
		c.tr = newMQTTTransport(cfg, c.bo)
	} else {
		c.tr = newHTTPTransport(cfg)
	}
	return c, nil
}

// Run connects, reconnects after every loss, reports the device's versions
// at every connect, finishes an upgrade the state file says was under way,
// and carries out the upgrades the server sends, until ctx ends. It
// returns ctx's error, or an error when the state file cannot be read.
func (c *Client) Run(ctx context.Context) error {
	st, err := loadState(c.cfg.StateFile)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("device: Run is already running")
	}
	c.st, c.runCtx = st, ctx
	c.mu.Unlock()
	defer c.finishRun()
	if err := c.tr.start(ctx, c); err != nil {
		return err
	}
	return c.loop(ctx)
}

// finishRun waits for the running job to stop and the transport to close.
func (c *Client) finishRun() {
	c.jobs.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.tr.stop(ctx)
	c.mu.Lock()
	c.runCtx = nil
	if j := c.st.Job; j != nil && c.cfg.StateFile == "" {
		// Without a state file no later run can resume the download: drop
		// its temporary file rather than leave it behind.
		c.removePart(*j)
	}
	c.mu.Unlock()
}

// loop handles connections and, in HTTP mode, polls for upgrades.
func (c *Client) loop(ctx context.Context) error {
	var poll <-chan time.Time
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.upCh:
			c.connected(ctx)
		case <-poll:
		}
		if !c.tr.polls() {
			continue
		}
		var wait time.Duration
		wait, failures = c.pollOnce(ctx, failures)
		poll = time.After(wait)
	}
}

// pollOnce asks for a pending upgrade and returns when to ask again.
func (c *Client) pollOnce(ctx context.Context, failures int) (time.Duration, int) {
	d, err := c.tr.poll(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("poll for an upgrade failed", "err", err)
		}
		return max(c.bo.wait(err, failures), c.jittered(c.cfg.PollInterval)/4), failures + 1
	}
	if d != nil {
		c.deliver(*d)
	}
	return c.jittered(c.cfg.PollInterval), 0
}

// jittered spreads d over [d/2, 3d/2).
func (c *Client) jittered(d time.Duration) time.Duration {
	return d/2 + time.Duration(c.cfg.Rand()*float64(d))
}

// connected prepares a fresh connection: subscribe, inform, then pick up
// where a restart left the current job.
func (c *Client) connected(ctx context.Context) {
	c.emit(Event{Kind: EventConnected})
	if err := c.tr.subscribe(ctx); err != nil {
		c.fail(err, "subscribe")
		return
	}
	c.setReady(true)
	if !c.installing() {
		if err := c.Inform(ctx); err != nil {
			c.fail(err, "inform")
		}
	} else if !c.tr.polls() {
		// No inform until the reboot; the server behind an external broker
		// learns from this that the device is back.
		if err := c.sendReliably(ctx, wire.Presence{Online: true}); err != nil {
			c.fail(err, "presence")
		}
	}
	c.resume(ctx)
}

// installing reports whether this process is installing a job right now:
// the old image still runs, and reporting it on a reconnect would look like
// a rollback. The job reports the new version itself after the reboot.
func (c *Client) installing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.st.Job
	return j != nil && c.cancel != nil && (j.Phase == phaseInstalling || j.Phase == phaseRebooting)
}

// Inform reports the versions the Installer returns. The client informs by
// itself at every connect; call Inform after changing a version outside
// the client.
func (c *Client) Inform(ctx context.Context) error {
	// The versions are read again before every try: a report retried
	// across an upgrade that finished meanwhile would otherwise tell the
	// server the old version after the new one, and the server cannot
	// tell which came first.
	var v map[string]string
	err := c.sendFresh(ctx, &c.inform, func(ctx context.Context) (wire.Message, error) {
		var err error
		if v, err = c.cfg.Installer.Versions(ctx); err != nil {
			return nil, fmt.Errorf("device: installer versions: %w", err)
		}
		return wire.Inform{Modules: v}, nil
	})
	if err != nil {
		return err
	}
	c.raiseFloors(v)
	c.emit(Event{Kind: EventInformed, Versions: v})
	return nil
}

// raiseFloors raises the downgrade floor of every module to the version it
// runs, so that the floor is the highest version the device has run.
func (c *Client) raiseFloors(versions map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for m, v := range versions {
		changed = c.st.raiseFloor(m, v) || changed
	}
	if changed {
		c.saveLocked()
	}
}

// Request asks the server for an upgrade of module and waits for its
// answer. When the server offers one, Request returns it and the client
// carries it out in the background (asking Config.Confirm first); when it
// has none, the error wraps ErrNoUpgrade.
func (c *Client) Request(ctx context.Context, module string) (wire.Upgrade, error) {
	c.request.Lock()
	defer c.request.Unlock()
	ch, err := c.startRequest()
	if err != nil {
		return wire.Upgrade{}, err
	}
	defer c.endRequest()
	if err := c.awaitReady(ctx); err != nil {
		return wire.Upgrade{}, err
	}
	m := wire.Request{Module: module}
	if v, err := c.cfg.Installer.Versions(ctx); err == nil {
		m.Version = v[module]
	}
	if err := c.sendReliably(ctx, m); err != nil {
		return wire.Upgrade{}, err
	}
	select {
	case d := <-ch:
		return requestAnswer(d)
	case <-ctx.Done():
		return wire.Upgrade{}, fmt.Errorf("device: waiting for the answer to a request: %w", ctx.Err())
	}
}

func (c *Client) startRequest() (chan downlink, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.runCtx == nil:
		return nil, ErrNotRunning
	case c.st.Job != nil:
		return nil, ErrBusy
	}
	c.waiter = make(chan downlink, 1)
	return c.waiter, nil
}

func (c *Client) endRequest() {
	c.mu.Lock()
	c.waiter = nil
	c.mu.Unlock()
}

// requestAnswer turns the downlink that answered a request into Request's
// result.
func requestAnswer(d downlink) (wire.Upgrade, error) {
	if d.kind == wire.KindUpgrade {
		return wire.DecodeUpgrade(d.payload)
	}
	r, err := wire.DecodeReply(d.payload)
	if err != nil {
		return wire.Upgrade{}, err
	}
	if r.Error == wire.CodeNoUpgrade {
		return wire.Upgrade{}, fmt.Errorf("device: %w: %s", ErrNoUpgrade, r.Message)
	}
	return wire.Upgrade{}, fmt.Errorf("device: request refused: %w", &wire.Error{Code: r.Error, Message: r.Message})
}

// sendReliably sends m until the server takes it, waiting between tries
// with backoff and as long as a busy server asks. It gives up only when
// ctx ends or the server refuses m for good.
func (c *Client) sendReliably(ctx context.Context, m wire.Message) error {
	return c.sendFresh(ctx, nil, func(context.Context) (wire.Message, error) { return m, nil })
}

// sendFresh is sendReliably for a message built anew before each try; an
// error of build ends it. When serial is not nil, it is held from each
// build to the end of that try's send (not while waiting to try again).
func (c *Client) sendFresh(ctx context.Context, serial *sync.Mutex, build func(context.Context) (wire.Message, error)) error {
	for attempt := 0; ; attempt++ {
		m, d, err := c.try(ctx, serial, build)
		if m == nil {
			return err
		}
		if err == nil {
			if d != nil {
				c.deliver(*d)
			}
			return nil
		}
		if ctx.Err() != nil || isPermanent(err) {
			return fmt.Errorf("device: send %s: %w", m.Kind(), err)
		}
		wait := c.bo.wait(err, attempt)
		c.emit(Event{Kind: EventRetry, Delay: wait, Err: err})
		c.log.Debug("send failed; retrying", "kind", m.Kind(), "err", err, "wait", wait)
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("device: send %s: %w", m.Kind(), err)
		}
	}
}

// try builds a message and sends it once, under serial when it is not nil;
// a nil message means build failed with err.
func (c *Client) try(ctx context.Context, serial *sync.Mutex, build func(context.Context) (wire.Message, error)) (wire.Message, *downlink, error) {
	if serial != nil {
		serial.Lock()
		defer serial.Unlock()
	}
	m, err := build(ctx)
	if err != nil {
		return nil, nil, err
	}
	d, err := c.tr.send(ctx, m)
	return m, d, err
}

// up, down, connectError and deliver make Client the transports' sink.
func (c *Client) up() {
	select {
	case c.upCh <- struct{}{}:
	default: // one pending signal is enough
	}
}

func (c *Client) down() {
	c.setReady(false)
	c.emit(Event{Kind: EventDisconnected})
}

// setReady opens or closes the gate Request waits at.
func (c *Client) setReady(ready bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.ready:
		if !ready {
			c.ready = make(chan struct{})
		}
	default:
		if ready {
			close(c.ready)
		}
	}
}

// awaitReady waits until the client has subscribed to its downlinks.
func (c *Client) awaitReady(ctx context.Context) error {
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("device: waiting for the connection: %w", ctx.Err())
	}
}

func (c *Client) connectError(err error) {
	c.log.Debug("connect failed", "err", err)
	c.emit(Event{Kind: EventConnectError, Err: err})
}

// deliver handles one downlink. It runs on the transport's goroutine, so
// it only decodes, decides and starts work.
func (c *Client) deliver(d downlink) {
	if c.answerRequest(d) {
		return
	}
	switch d.kind {
	case wire.KindUpgrade:
		up, err := wire.DecodeUpgrade(d.payload)
		if err != nil {
			c.fail(err, "ignored an upgrade message")
			return
		}
		c.handleUpgrade(up)
	case wire.KindReply:
		c.handleReply(d.payload)
	}
}

// answerRequest passes the answer to a waiting Request; an offer is also
// handled as any upgrade.
func (c *Client) answerRequest(d downlink) bool {
	c.mu.Lock()
	ch := c.waiter
	c.mu.Unlock()
	if ch == nil || !isRequestAnswer(d) {
		return false
	}
	select {
	case ch <- d:
	default:
	}
	return d.kind == wire.KindReply
}

func isRequestAnswer(d downlink) bool {
	if d.kind == wire.KindReply {
		r, err := wire.DecodeReply(d.payload)
		return err == nil && r.To == wire.KindRequest
	}
	up, err := wire.DecodeUpgrade(d.payload)
	return err == nil && !up.Cancel && up.Mode == wire.ModeRequest
}

func (c *Client) handleReply(payload []byte) {
	r, err := wire.DecodeReply(payload)
	if err != nil {
		c.fail(err, "ignored a reply message")
		return
	}
	c.log.Warn("the server refused a message", "to", r.To, "job", r.Job, "code", r.Error, "message", r.Message)
	c.emit(Event{Kind: EventReply, Job: r.Job, Code: r.Error, Err: &wire.Error{Code: r.Error, Message: r.Message}})
}

// emit stamps e and passes it to Config.OnEvent.
func (c *Client) emit(e Event) {
	if c.cfg.OnEvent == nil {
		return
	}
	e.At = time.Now()
	c.cfg.OnEvent(e)
}

// fail logs and reports an error that has no job to fail.
func (c *Client) fail(err error, what string) {
	c.log.Warn(what, "err", err)
	c.emit(Event{Kind: EventError, Err: fmt.Errorf("%s: %w", what, err)})
}

// publicKey returns the key that must have signed every manifest.
func (c *Client) publicKey() ed25519.PublicKey { return c.cfg.PublicKey }
