package mqtt

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"golang.org/x/time/rate"

	"github.com/otter-ota/otter/internal/engine"
)

// listener serves mochi from a net.Listener opened by New, so that New
// knows the bound address and reports a taken port itself. Unlike mochi's
// own listeners it survives transient Accept errors (too many open files),
// bounds the time to CONNECT, wraps every connection in a *conn, and on
// Close waits until every connection it accepted has ended. That last part
// also keeps mochi's Close away from two of its races: Clients.GetByListener
// takes a read lock twice and deadlocks against a client connecting or
// leaving (mochi issue 488), and ClientsWg.Add can run concurrently with
// ClientsWg.Wait.
type listener struct {
	id         string
	ln         net.Listener
	log        *slog.Logger
	disconnect func(listener string) // sends DISCONNECT to the listener's clients

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{}
	wg     sync.WaitGroup // connections being served; Add only while !closed
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id string, ln net.Listener, log *slog.Logger, disconnect func(string)) *listener {
	return &listener{id: id, ln: ln, log: log, disconnect: disconnect, conns: make(map[*conn]struct{})}
}

// Init implements listeners.Listener; the socket is already open.
func (l *listener) Init(*slog.Logger) error { return nil }

// ID implements listeners.Listener.
func (l *listener) ID() string { return l.id }

// Address implements listeners.Listener.
func (l *listener) Address() string { return l.ln.Addr().String() }

// Protocol implements listeners.Listener.
func (l *listener) Protocol() string { return l.id }

// Serve accepts connections until Close and hands each to mochi.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("mqtt: accept failed; retrying", "listener", l.id, "in", delay, "err", err)
			time.Sleep(delay) // back off like net/http: the error is usually EMFILE
			continue
		}
		delay = 0
		_ = nc.SetDeadline(time.Now().Add(connectTimeout)) // mochi sets the keepalive deadline after CONNECT
		c := &conn{Conn: nc, logs: rate.Sometimes{Interval: logInterval}}
		if !l.track(c) {
			nc.Close()
			return
		}
		go l.serve(establish, c)
	}
}

// track registers a new connection, unless the listener is closed.
func (l *listener) track(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *listener) serve(establish listeners.EstablishFn, c *conn) {
	defer l.wg.Done()
	if err := establish(l.id, c); err != nil {
		// Refusals are logged (rate-limited) where they happen; the rest is
		// the ordinary end of a connection.
		l.log.Debug("mqtt: connection ended", "listener", l.id, "remote", c.RemoteAddr().String(), "err", err)
	}
	c.finish()
	if c.slot != nil {
		c.slot() // the connection is over: its device may open another
	}
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// Close stops accepting, disconnects the listener's clients (with a
// DISCONNECT where they have a session, by closing the socket where they
// are still connecting), and waits until each has been served to its end:
// OnDisconnect included, so that every device is reported offline.
func (l *listener) Close(listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.ln.Close()
	l.disconnect(l.id)
	l.mu.Lock()
	for c := range l.conns {
		c.Conn.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// conn is a device's network connection, carrying what the broker knows
// about it. mochi keeps it as Client.Net.Conn, so every hook finds it from
// the client without a map lookup, and it goes away with the connection.
type conn struct {
	net.Conn

	dev atomic.Pointer[engine.Device] // set once, at CONNECT, before anyone else reads it
	// client is the connection's mochi client, set at CONNECT; revoked
	// says the device's credentials changed since it logged in: it is
	// being closed, and takes and receives nothing more.
	client  atomic.Pointer[mochi.Client]
	revoked atomic.Bool
	// enos says the device logged in with EnOS's protocol (set at CONNECT,
	// before dev): it may also use its /sys/{product}/{device}/ tree, and
	// receives its upgrades there in EnOS's form.
	enos atomic.Bool
	// end, when set, runs once the connection has been served.
	endMu sync.Mutex
	end   func()
	// held keeps the upgrade commands sent to the device while this
	// connection had not yet subscribed to them (ready), to be published
	// once it has: a command sent between the CONNACK and the SUBSCRIBE is
	// neither lost nor sent twice.
	heldMu sync.Mutex
	held   [][]byte
	ready  bool
	// slot gives back the device's connection slot (connLimit); set at
	// CONNECT in the connection's goroutine, run once it has ended.
	slot func()

	// release, when set, takes the connection out of the device's presence
	// count, once. OnDisconnect runs it; so does Close until the connection
	// is live, since mochi may fail between counting a connection and its
	// read loop without calling OnDisconnect. A live connection closed by
	// another goroutine (a takeover, shutdown) is released by its own
	// goroutine, never the closer's.
	releaseMu sync.Mutex
	release   func()
	live      bool

	// Fields below are used only by the connection's own read goroutine.
	after     func()         // runs once the current packet has been answered
	receiving bool           // the session is subscribed to its upgrade commands
	logs      rate.Sometimes // uplink error log lines
}

// Close closes the connection and releases its presence if it never went
// live.
func (c *conn) Close() error {
	c.releaseMu.Lock()
	f := c.release
	if c.live {
		f = nil
	} else {
		c.release = nil
	}
	c.releaseMu.Unlock()
	if f != nil {
		f()
	}
	return c.Conn.Close()
}

// setRelease arms the release of the connection's presence.
func (c *conn) setRelease(f func()) {
	c.releaseMu.Lock()
	defer c.releaseMu.Unlock()
	c.release = f
}

// goLive reports whether the connection is still counted (not closed), and
// makes only OnDisconnect release it from now on.
func (c *conn) goLive() bool {
	c.releaseMu.Lock()
	defer c.releaseMu.Unlock()
	c.live = true
	return c.release != nil
}

// releasePresence runs the release of the connection's presence, once.
func (c *conn) releasePresence() {
	c.releaseMu.Lock()
	f := c.release
	c.release = nil
	c.releaseMu.Unlock()
	if f != nil {
		f()
	}
}

// device returns the authenticated device of the connection, or nil (also
// once the connection is revoked).
func (c *conn) device() *engine.Device {
	if c.revoked.Load() {
		return nil
	}
	return c.dev.Load()
}

// maxHeld bounds the commands held for a connection that does not
// subscribe; the oldest go first (the engine sends commands again anyway).
const maxHeld = 16

// hold keeps a command for the connection unless it already receives them.
func (c *conn) hold(payload []byte) {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	if c.ready {
		return
	}
	if len(c.held) == maxHeld {
		c.held = c.held[1:]
	}
	c.held = append(c.held, payload)
}

// receive marks the connection as receiving commands and returns those
// held for it.
func (c *conn) receive() [][]byte {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	c.ready = true
	held := c.held
	c.held = nil
	return held
}

// isLive reports whether the connection got its CONNACK and reads packets.
func (c *conn) isLive() bool {
	c.releaseMu.Lock()
	defer c.releaseMu.Unlock()
	return c.live
}

// setEnd arms what runs when the connection has been served.
func (c *conn) setEnd(f func()) {
	c.endMu.Lock()
	defer c.endMu.Unlock()
	c.end = f
}

// finish runs the connection's end, once.
func (c *conn) finish() {
	c.endMu.Lock()
	f := c.end
	c.end = nil
	c.endMu.Unlock()
	if f != nil {
		f()
	}
}

// connOf returns the connection of a device client; the inline client and
// clients of other listeners have none.
func connOf(cl *mochi.Client) (*conn, bool) {
	if cl == nil || cl.Net.Inline {
		return nil, false
	}
	c, ok := cl.Net.Conn.(*conn)
	return c, ok
}

// deviceOf returns the authenticated device of a client, or nil.
func deviceOf(cl *mochi.Client) *engine.Device {
	if c, ok := connOf(cl); ok {
		return c.device()
	}
	return nil
}
