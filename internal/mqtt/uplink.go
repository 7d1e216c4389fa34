package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// What uplink tells mochi, as error values made once: packets.Code is a
// struct, and converting one to an error allocates (every uplink returned
// one: 0.28 CPU-s of a 10,000-device fleet, mostly the GC assist charged
// to the allocation). mochi compares them with errors.Is, which finds
// equal values.
var (
	errIgnore error = packets.CodeSuccessIgnore
	errReject error = packets.ErrRejectPacket
)

// uplink handles a device's publish. mochi calls it (OnPublish) before it
// acknowledges a QoS 1 message, and the engine stores the message before it
// returns, so a PUBACK always follows the commit. The result tells mochi
// what to do with the packet:
//   - packets.CodeSuccessIgnore: acknowledge it and forward it to nobody;
//   - packets.ErrRejectPacket: do not acknowledge it; the connection is then
//     closed (c.after) so that the device sends it again when it reconnects,
//     which is the only time MQTT lets a client resend.
//
// Any reply (an error, the engine's answer) is published from c.after, once
// mochi has acknowledged the message.
func (b *Broker) uplink(c *conn, cl *mochi.Client, pk packets.Packet) error {
	d := c.device()
	if d == nil { // the ACL lets no publish through without a device
		return errReject
	}
	if c.enos.Load() && strings.HasPrefix(pk.TopicName, "/sys/") {
		return b.enosUplink(c, cl, d, pk)
	}
	start := time.Now()
	kind, msg, err := decodeUplink(pk.TopicName, pk.Payload)
	if err != nil {
		b.refuseUplink(c, d, pk, kind, err)
		return errIgnore
	}
	a, err := b.dispatch(d, msg)
	if err != nil {
		return b.failUplink(c, cl, d, pk, kind, err)
	}
	b.metrics.uplinks.WithLabelValues(string(kind)).Inc()
	b.metrics.uplinkTime.Observe(time.Since(start).Seconds())
	if a != nil {
		c.after = func() { b.answer(d, a) }
	}
	return errIgnore
}

// decodeUplink parses the topic and the payload of a device message. On
// error, kind is what the reply answers: the message's kind, or the last
// level of an unknown topic.
func decodeUplink(topic string, payload []byte) (wire.Kind, wire.Message, error) {
	_, _, kind, err := wire.ParseTopic(topic)
	if err != nil {
		return wire.ReplyTo(topic), nil, err
	}
	if !kind.Uplink() {
		return kind, nil, &wire.Error{Code: wire.CodeUnknownTopic, Message: fmt.Sprintf(
			"devices send inform, request, confirm or progress messages; %s messages come from the server", kind)}
	}
	m, err := wire.Decode(kind, payload)
	return kind, m, err
}

// dispatch hands a decoded message to the engine.
func (b *Broker) dispatch(d *engine.Device, m wire.Message) (*engine.Answer, error) {
	ctx, cancel := b.call()
	defer cancel()
	h := b.cfg.Devices
	switch m := m.(type) {
	case wire.Inform:
		return h.Inform(ctx, *d, m)
	case wire.Request:
		return h.Request(ctx, *d, m)
	case wire.Confirm:
		return h.Confirm(ctx, *d, m)
	case wire.Progress:
		return h.Progress(ctx, *d, m)
	case wire.Presence:
		// This broker sees the device's connections itself; a device
		// announcing a clean disconnect changes nothing here.
		return nil, nil
	}
	return nil, fmt.Errorf("mqtt: no handler for %s messages", m.Kind())
}

// refuseUplink answers a message the device got wrong with an error reply
// on its reply topic; the message itself is acknowledged (sending it again
// would not help).
func (b *Broker) refuseUplink(c *conn, d *engine.Device, pk packets.Packet, kind wire.Kind, err error) {
	reply := wire.ErrorReply(kind, err)
	if reply.Job == "" {
		reply.Job = wire.JobNamed(pk.Payload)
	}
	b.metrics.uplinkErrors.WithLabelValues(reply.Error).Inc()
	c.logs.Do(func() {
		b.log.Info("mqtt: device message refused", "product", d.Product, "device", d.Key,
			"topic", wire.Clip(pk.TopicName, maxQuoted), "bytes", len(pk.Payload), "code", reply.Error, "err", reply.Message)
	})
	c.after = func() { b.send(d, wire.KindReply, reply) }
}

// failUplink handles an error from the engine. A store that is unavailable
// (or any error not caused by the message) leaves the message
// unacknowledged and closes the connection, so the device sends it again; a
// message the engine refuses gets an error reply like a malformed one.
func (b *Broker) failUplink(c *conn, cl *mochi.Client, d *engine.Device, pk packets.Packet, kind wire.Kind, err error) error {
	if deleted(err) {
		// The device was deleted after it logged in: its session ends, and
		// the message, which can have no effect, is not acknowledged.
		b.metrics.uplinkErrors.WithLabelValues(wire.CodeUnauthorized).Inc()
		if !c.revoked.Swap(true) {
			c.after = func() { b.kick(c) }
		}
		return errReject
	}
	if code, refused := engine.DeviceFault(err); refused {
		b.refuseUplink(c, d, pk, kind, &wire.Error{Code: code, Message: ota.ErrorMessage(err)})
		return errIgnore
	}
	b.metrics.uplinkErrors.WithLabelValues(wire.CodeUnavailable).Inc()
	c.logs.Do(func() {
		b.log.Warn("mqtt: device message not stored; closing the connection so the device sends it again",
			"product", d.Product, "device", d.Key, "kind", kind, "err", err)
	})
	c.after = func() { b.drop(cl) }
	return errReject
}

// drop closes a device's connection after a message that was not stored.
// MQTT 3.1.1 has no server DISCONNECT, so those clients just see the close.
func (b *Broker) drop(cl *mochi.Client) {
	if cl.Properties.ProtocolVersion == 5 {
		_ = b.srv.DisconnectClient(cl, packets.ErrServerBusy)
		return
	}
	cl.Stop(errNotStored)
}

var errNotStored = errors.New("a message could not be stored")

// answer publishes the engine's answer to a device.
func (b *Broker) answer(d *engine.Device, a *engine.Answer) {
	if !a.Kind.Downlink() || a.Message == nil {
		b.log.Error("mqtt: engine answer is not a downlink message; dropped", "kind", a.Kind, "product", d.Product, "device", d.Key)
		return
	}
	b.send(d, a.Kind, a.Message)
}

func (b *Broker) send(d *engine.Device, k wire.Kind, m wire.Message) {
	b.publish(wire.Topic(d.Product, d.Key, k), k, wire.Encode(m))
}
