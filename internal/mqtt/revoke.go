package mqtt

import (
	"errors"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/sdk/wire"
)

// sessions tracks the connections of each device name ({product}/{device})
// from before their credentials are read until they end, so that a change
// of a device's credentials (a rotated secret, a deletion) reaches every
// connection that logged in with the old ones, including one whose login
// is still in progress: it is registered before it reads the store, so
// either the change is committed before that read (and the login fails) or
// the connection is registered when the change is announced (and is
// revoked).
type sessions struct {
	mu     sync.Mutex
	byName map[string]map[*conn]struct{}
}

func newSessions() *sessions {
	return &sessions{byName: make(map[string]map[*conn]struct{})}
}

// register adds a connection under a device name until it ends.
func (s *sessions) register(name string, c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.byName[name]
	if set == nil {
		set = make(map[*conn]struct{})
		s.byName[name] = set
	}
	set[c] = struct{}{}
	c.setEnd(func() { s.unregister(name, c) })
}

func (s *sessions) unregister(name string, c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byName[name], c)
	if len(s.byName[name]) == 0 {
		delete(s.byName, name)
	}
}

// hold keeps an upgrade command for the connections of a device name that
// have logged in and not yet subscribed to their commands.
func (s *sessions) hold(name string, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.byName[name] {
		if c.device() != nil {
			c.hold(payload)
		}
	}
}

// speaksEnOS reports whether a device name has a connection logged in with
// EnOS's protocol.
func (s *sessions) speaksEnOS(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.byName[name] {
		if c.enos.Load() && c.device() != nil {
			return true
		}
	}
	return false
}

// revoke marks the connections of a device name revoked and returns them;
// with keep set, the connections of device keep (and of any later device
// of the name) are left alone. Device ids only grow, so a lower id under
// the same name is a deleted device.
func (s *sessions) revoke(name string, keep int64) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for c := range s.byName[name] {
		if d := c.dev.Load(); keep != 0 && (d == nil || d.ID >= keep) {
			continue
		}
		if !c.revoked.Swap(true) {
			out = append(out, c)
		}
	}
	return out
}

// errRevoked closes a session whose device's credentials changed.
var errRevoked = errors.New("the device's credentials changed (secret rotated or device deleted)")

// CredentialsChanged closes at once every connection of a device that
// logged in with its former credentials: its secret was rotated, or it was
// deleted (and perhaps created again). From this call on, the closed
// sessions receive nothing and their messages are not taken, and a
// persistent session they leave is discarded. The device logs in again
// with its current secret, if it has one.
func (b *Broker) CredentialsChanged(product, key string) {
	for _, c := range b.sessions.revoke(wire.Username(product, key), 0) {
		b.kick(c)
	}
}

// supersede revokes the connections of older devices of the same name: a
// session of a deleted device must never receive what is sent to the
// device that took its key.
func (b *Broker) supersede(d *engine.Device) {
	for _, c := range b.sessions.revoke(wire.Username(d.Product, d.Key), d.ID) {
		b.kick(c)
	}
}

// kick closes a revoked connection: with DISCONNECT "not authorized" for
// MQTT 5 clients, by closing the socket for the others and for a login
// still in progress.
func (b *Broker) kick(c *conn) {
	b.metrics.revoked.Inc()
	cl := c.client.Load()
	if cl != nil && cl.Properties.ProtocolVersion == 5 && c.isLive() {
		_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
		return
	}
	if cl != nil {
		cl.Stop(errRevoked)
		return
	}
	c.Conn.Close()
}

// discardSession removes a revoked connection's session as it ends, even a
// persistent one, so that nobody inherits its subscriptions or the
// messages queued for it. It runs in the connection's own goroutine, from
// OnDisconnect, like mochi's own removal of an expired session.
func (b *Broker) discardSession(cl *mochi.Client) {
	if cl.IsTakenOver() {
		return
	}
	b.srv.UnsubscribeClient(cl)
	cl.ClearInflights()
	b.srv.Clients.Delete(cl.ID)
}

// dropStaleSession discards a disconnected persistent session under the
// client id a device is connecting with when it belongs to another device
// (a deleted one with the same key) or to a revoked login: it is not the
// connecting device's to resume.
func (b *Broker) dropStaleSession(id string, d *engine.Device) {
	old, ok := b.srv.Clients.Get(id)
	if !ok || !old.Closed() {
		return
	}
	c, ok := connOf(old)
	if !ok {
		return
	}
	if od := c.dev.Load(); od != nil && od.ID == d.ID && !c.revoked.Load() {
		return
	}
	b.srv.UnsubscribeClient(old)
	old.ClearInflights()
	b.srv.Clients.Delete(id)
}
