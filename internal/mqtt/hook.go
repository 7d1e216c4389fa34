package mqtt

import (
	"context"
	"errors"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/sdk/wire"
)

// hook plugs the broker into mochi. What mochi does around each hook, for
// one connection (all in that connection's goroutine):
//
//	CONNECT:   OnConnect (we authenticate here, and answer a refusal with our
//	           own CONNACK) -> OnConnectAuthenticate -> OnSessionEstablish ->
//	           takeover of an older session with the same client id (closes
//	           it) -> CONNACK -> OnSessionEstablished -> read loop
//	PUBLISH:   OnACLCheck(write) -> OnPublish -> PUBACK -> OnPacketProcessed
//	SUBSCRIBE: OnSubscribe -> OnACLCheck(read) per filter -> OnSubscribed ->
//	           SUBACK -> OnPacketProcessed
//	end:       OnDisconnect (only after OnSessionEstablished)
//
// and on delivery to a subscriber, OnACLCheck(read) with the topic.
type hook struct {
	mochi.HookBase
	b *Broker
}

// ID implements mochi.Hook.
func (h *hook) ID() string { return "otter" }

// Provides implements mochi.Hook. mochi asks it for every event of every
// packet (read, encoded, sent, processed, ...), so it is a switch, not a
// search through a list.
func (h *hook) Provides(x byte) bool {
	switch x {
	case mochi.OnConnect, mochi.OnConnectAuthenticate, mochi.OnACLCheck,
		mochi.OnSessionEstablish, mochi.OnSessionEstablished, mochi.OnDisconnect,
		mochi.OnPublish, mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnPacketProcessed:
		return true
	}
	return false
}

// OnConnect authenticates the device; an error refuses the connection.
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	return h.b.authenticate(cl, pk)
}

// OnConnectAuthenticate accepts the clients OnConnect authenticated.
func (h *hook) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	return deviceOf(cl) != nil
}

// OnACLCheck confines a device to its own topics.
func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	d, enosLogin := deviceOf(cl), speaksEnOS(cl)
	if !write {
		return mayReceive(d, enosLogin, topic)
	}
	if mayPublish(d, enosLogin, topic) {
		return true
	}
	h.b.denied(d, "publish", topic)
	return false
}

// OnSessionEstablish counts the connection before mochi closes any session
// it takes over, so that the device never looks offline in between.
func (h *hook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	if c, ok := connOf(cl); ok {
		h.b.count(c)
	}
}

// OnSessionEstablished reports the device online once it has its CONNACK.
func (h *hook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if c, ok := connOf(cl); ok {
		h.b.online(c, cl)
	}
}

// OnDisconnect reports the device offline if this was its last connection.
func (h *hook) OnDisconnect(cl *mochi.Client, err error, _ bool) {
	c, ok := connOf(cl)
	if !ok {
		return
	}
	if errors.Is(err, packets.ErrPacketTooLarge) {
		h.b.tooLarge(c)
	}
	if c.revoked.Load() {
		h.b.discardSession(cl)
	}
	c.releasePresence()
}

// OnPublish handles device messages; the inline client's (downlinks) pass.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	c, ok := connOf(cl)
	if !ok {
		return pk, nil
	}
	return pk, h.b.uplink(c, cl, pk)
}

// OnSubscribe counts the filters the ACL will deny; mochi answers them
// with a failure code in the SUBACK (0x87, or 0x80 for MQTT 3.1.1).
func (h *hook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	d, enosLogin := deviceOf(cl), speaksEnOS(cl)
	for _, f := range pk.Filters {
		if !mayReceive(d, enosLogin, f.Filter) {
			h.b.denied(d, "subscribe", f.Filter)
		}
	}
	return pk
}

// OnSubscribed notices the first subscription of a connection that
// delivers upgrade commands.
func (h *hook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	if c, ok := connOf(cl); ok {
		h.b.subscribed(c, pk, codes)
	}
}

// OnPacketProcessed runs what a packet left to do once mochi has answered
// it (PUBACK, SUBACK): replies, answers, a resend, a disconnect.
func (h *hook) OnPacketProcessed(cl *mochi.Client, _ packets.Packet, _ error) {
	if c, ok := connOf(cl); ok && c.after != nil {
		f := c.after
		c.after = nil
		f()
	}
}

// tooLarge accounts for a connection mochi closed because a packet was
// over maxPacketSize: no reply is possible, the packet was never read.
func (b *Broker) tooLarge(c *conn) {
	b.metrics.uplinkErrors.WithLabelValues(wire.CodeTooLarge).Inc()
	if d := c.device(); d != nil {
		c.logs.Do(func() {
			b.log.Info("mqtt: connection closed: a packet was over the size limit", "product", d.Product, "device", d.Key,
				"limit", maxPacketSize)
		})
	}
}

// denied counts and logs an ACL denial.
func (b *Broker) denied(d *engine.Device, action, topic string) {
	b.metrics.aclDenied.WithLabelValues(action).Inc()
	if d == nil {
		return
	}
	b.log.Debug("mqtt: outside the device's topics; denied", "action", action,
		"product", d.Product, "device", d.Key, "topic", wire.Clip(topic, maxQuoted))
}

// count adds a connection to its device's presence and arms its release.
func (b *Broker) count(c *conn) {
	d := c.device()
	if d == nil {
		return // revoked while connecting: it is being closed
	}
	b.presence.add(d.ID)
	b.metrics.connected.Inc()
	c.setRelease(func() {
		b.metrics.connected.Dec()
		b.presence.remove(d.ID, func() { b.report("Disconnected", d, b.cfg.Devices.Disconnected) })
	})
}

// online reports a connection that got its CONNACK: the engine then sends
// the commands the device missed, once. A session resumed with a
// subscription to upgrade commands receives them at once; a new session
// gets them when it subscribes (held until then).
func (b *Broker) online(c *conn, cl *mochi.Client) {
	if !c.goLive() {
		return // already closed (taken over) before it went live
	}
	d := c.device()
	if d == nil {
		return // revoked: being closed; OnDisconnect releases its presence
	}
	b.metrics.connects.Inc()
	if c.enos.Load() {
		b.subscribeEnOS(c, cl, d)
	}
	for filter := range cl.State.Subscriptions.GetAll() {
		c.receiving = c.receiving || coversUpgrade(d, filter)
	}
	if c.receiving {
		c.receive() // what was held went through the inherited subscription
	}
	b.presence.connected(d.ID, func() { b.report("Connected", d, b.cfg.Devices.Connected) })
}

// subscribed publishes, after the SUBACK, the commands held for a session
// that first subscribed to its upgrade commands: the engine sent them
// since the CONNECT (the missed ones, at Connected), and they found no
// subscription.
func (b *Broker) subscribed(c *conn, pk packets.Packet, codes []byte) {
	d := c.device()
	if c.receiving || d == nil {
		return
	}
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 && coversUpgrade(d, f.Filter) {
			c.receiving = true
			held := c.receive()
			c.after = func() {
				for _, payload := range held {
					b.publish(wire.Topic(d.Product, d.Key, wire.KindUpgrade), wire.KindUpgrade, payload)
				}
			}
			return
		}
	}
}

// deleted reports whether the engine refused a device as deleted: its
// sessions are being closed, and its presence no longer matters.
func deleted(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && we.Code == wire.CodeUnauthorized
}

// report calls the engine about a device's presence; a failure is logged:
// the engine's timers send commands again anyway.
func (b *Broker) report(what string, d *engine.Device, f func(ctx context.Context, d engine.Device) error) {
	ctx, cancel := b.call()
	defer cancel()
	if err := f(ctx, *d); err != nil && !deleted(err) {
		b.presenceLogs.Do(func() {
			b.log.Warn("mqtt: presence not recorded", "event", what, "product", d.Product, "device", d.Key, "err", err)
		})
	}
}
