package brokerclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

// received runs in paho's delivery goroutine, which must never wait: the
// same goroutine reads the broker's SUBACK, and a successor's engine
// starts only once its subscription is confirmed, while the uplinks of
// the session it took over wait for that engine. It queues the message
// behind the ones of the same device still in hand, and a goroutine per
// device with messages in hand handles them in the order they came, each
// after taking a worker slot: devices are handled concurrently, but one
// device's reports never overtake each other (an inform of the old
// version retried across the upgrade would otherwise be stored after the
// new one, and the server would believe the device went back). The
// broker's receive maximum (Workers) bounds how many wait
// unacknowledged. A message is acknowledged once its effect is stored;
// paho sends the acknowledgements in the order the messages came, as MQTT
// requires.
func (c *Client) received(pr paho.PublishReceived) (bool, error) {
	if c.work.Err() != nil {
		return true, nil // not acknowledged: delivered again later
	}
	if pr.Packet.Duplicate() {
		c.m.redelivered.Inc()
	}
	c.inflight.Add(1)
	key := deviceOf(pr.Packet.Topic)
	c.qmu.Lock()
	q, busy := c.queues[key]
	if !busy {
		q = &deviceQueue{}
		c.queues[key] = q
	}
	q.msgs = append(q.msgs, pr)
	c.qmu.Unlock()
	if !busy {
		go c.drain(key, q)
	}
	return true, nil
}

// deviceQueue holds the messages of one device that are in hand, oldest
// first; the head is the one being handled.
type deviceQueue struct {
	msgs []paho.PublishReceived
}

// drain handles a device's messages one after the other until its queue
// is empty. Once work ends it drops the rest unacknowledged (the broker
// delivers them again).
func (c *Client) drain(key string, q *deviceQueue) {
	for {
		c.qmu.Lock()
		pr := q.msgs[0]
		c.qmu.Unlock()
		c.handleOne(pr)
		c.qmu.Lock()
		q.msgs[0] = paho.PublishReceived{}
		q.msgs = q.msgs[1:]
		if len(q.msgs) == 0 {
			delete(c.queues, key)
			c.qmu.Unlock()
			return
		}
		c.qmu.Unlock()
	}
}

// handleOne takes a worker slot, handles the message and acknowledges it
// once its effect is stored.
func (c *Client) handleOne(pr paho.PublishReceived) {
	defer c.inflight.Done()
	select {
	case c.slots <- struct{}{}:
	case <-c.work.Done():
		return // not acknowledged: delivered again later
	}
	defer func() { <-c.slots }()
	if c.handle(pr.Packet) {
		if err := pr.Client.Ack(pr.Packet); err != nil {
			// The connection it came on is gone; the broker delivers
			// the message again on the next one.
			c.log.Debug("broker: acknowledgement not sent", "topic", pr.Packet.Topic, "err", err)
		}
	}
}

// deviceOf returns the part of an uplink's topic that names its device
// (what comes before the message kind); a topic otter does not take is
// its own key, as its message is dropped anyway.
func deviceOf(topic string) string {
	if i := strings.LastIndexByte(topic, '/'); i > 0 {
		return topic[:i]
	}
	return topic
}

// handle takes one uplink. It reports whether the message may be
// acknowledged: its effect is stored, or it can have none (a malformed
// message, an unknown device). It returns false only when Close gave up
// on it.
func (c *Client) handle(p *paho.Publish) bool {
	product, key, kind, err := wire.ParseTopic(p.Topic)
	if err != nil || !kind.Uplink() {
		c.logs.Do(func() {
			c.log.Warn("broker: message on a topic otter does not take; dropped", "topic", wire.Clip(p.Topic, 80))
		})
		return true
	}
	msg, err := wire.Decode(kind, p.Payload)
	if err != nil {
		c.refuse(product, key, kind, p.Payload, err)
		c.m.uplinks.WithLabelValues(string(kind)).Inc()
		return true
	}
	for attempt := 0; ; attempt++ {
		done, err := c.deliver(product, key, msg)
		if done {
			c.m.uplinks.WithLabelValues(string(kind)).Inc()
			return true
		}
		if c.work.Err() != nil {
			return false
		}
		wait := min(retryMax, retryMin<<min(attempt, 10))
		c.logs.Do(func() {
			c.log.Warn("broker: device message not stored; trying again", "product", product, "device", key,
				"kind", kind, "err", err, "wait", wait)
		})
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.work.Done():
			t.Stop()
			return false
		}
	}
}

// deliver hands one decoded message to the engine and sends its answer.
// It reports whether the message is done with (stored, refused, or of a
// device that does not exist); otherwise err says why it must be tried
// again.
func (c *Client) deliver(product, key string, msg wire.Message) (bool, error) {
	ctx, cancel := context.WithTimeout(c.work, callTimeout)
	defer cancel()
	d, err := c.device(ctx, product, key, false)
	if ota.ErrorCode(err) == ota.ENOTFOUND {
		c.logs.Do(func() {
			c.log.Warn("broker: message of a device not in the registry; dropped (run otter broker sync)",
				"product", product, "device", key, "kind", msg.Kind())
		})
		return true, nil
	}
	if err != nil {
		return false, err
	}
	a, err := c.dispatch(ctx, d, msg)
	if deleted(err) {
		// The cached id is of a deleted device; the key may belong to a
		// new one.
		if d, err = c.device(ctx, product, key, true); err != nil {
			return ota.ErrorCode(err) == ota.ENOTFOUND, err
		}
		a, err = c.dispatch(ctx, d, msg)
		if deleted(err) {
			return true, nil
		}
	}
	if code, refused := engine.DeviceFault(err); refused {
		c.refuse(product, key, msg.Kind(), nil, &wire.Error{Code: code, Message: ota.ErrorMessage(err)})
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if a != nil {
		c.answer(d, a)
	}
	return true, nil
}

// dispatch calls the engine. An inform is what a device sends at every
// connect, and a presence message is its will or its announcement that
// it is back: they tell the engine what the embedded broker would from
// the connection itself.
func (c *Client) dispatch(ctx context.Context, d engine.Device, m wire.Message) (*engine.Answer, error) {
	h := c.cfg.Devices
	switch m := m.(type) {
	case wire.Inform:
		if err := h.Connected(ctx, d); err != nil {
			return nil, err
		}
		return h.Inform(ctx, d, m)
	case wire.Request:
		return h.Request(ctx, d, m)
	case wire.Confirm:
		return h.Confirm(ctx, d, m)
	case wire.Progress:
		return h.Progress(ctx, d, m)
	case wire.Presence:
		if m.Online {
			return nil, h.Connected(ctx, d)
		}
		return nil, h.Disconnected(ctx, d)
	}
	return nil, fmt.Errorf("brokerclient: no handler for %s messages", m.Kind())
}

// device returns the engine's name for a device, from the cache unless
// fresh is set.
func (c *Client) device(ctx context.Context, product, key string, fresh bool) (engine.Device, error) {
	name := wire.Username(product, key)
	if !fresh {
		if id, ok := c.ids.Load(name); ok {
			return engine.Device{ID: id.(int64), Product: product, Key: key}, nil
		}
	}
	cred, err := c.cfg.Resolver.Credentials(ctx, product, key)
	if err != nil {
		if ota.ErrorCode(err) == ota.ENOTFOUND {
			c.ids.Delete(name)
		}
		return engine.Device{}, err
	}
	if c.nids.Add(1) > maxCached {
		c.ids.Clear()
		c.nids.Store(1)
	}
	c.ids.Store(name, cred.DeviceID)
	return engine.Device{ID: cred.DeviceID, Product: product, Key: key}, nil
}

// deleted reports an engine error saying the device was deleted.
func deleted(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && we.Code == wire.CodeUnauthorized
}

// refuse answers a message the device got wrong on its reply topic.
func (c *Client) refuse(product, key string, kind wire.Kind, payload []byte, err error) {
	reply := wire.ErrorReply(kind, err)
	if reply.Job == "" && payload != nil {
		reply.Job = wire.JobNamed(payload)
	}
	c.logs.Do(func() {
		c.log.Info("broker: device message refused", "product", product, "device", key, "kind", kind,
			"code", reply.Error, "err", reply.Message)
	})
	c.publish(wire.KindReply, wire.Topic(product, key, wire.KindReply), wire.Encode(reply))
}

func (c *Client) answer(d engine.Device, a *engine.Answer) {
	if !a.Kind.Downlink() || a.Message == nil {
		c.log.Error("broker: engine answer is not a downlink message; dropped", "kind", a.Kind, "product", d.Product, "device", d.Key)
		return
	}
	c.publish(a.Kind, wire.Topic(d.Product, d.Key, a.Kind), wire.Encode(a.Message))
}

// Send publishes an engine downlink at QoS 1. It implements the engine's
// Downlink: it does not wait for the network, and a message that cannot
// go out now is dropped (the engine sends commands again).
func (c *Client) Send(product, device, kind string, payload []byte) {
	k := wire.Kind(kind)
	if !k.Downlink() {
		c.log.Error("broker: not a downlink kind; message dropped", "kind", kind, "product", product, "device", device)
		return
	}
	go c.publish(k, wire.Topic(product, device, k), payload)
}

// publish publishes one downlink and waits for the broker's PUBACK.
func (c *Client) publish(kind wire.Kind, topic string, payload []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	pr, err := c.cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if err == nil && pr != nil && pr.ReasonCode >= 0x80 {
		err = fmt.Errorf("the broker refused it with reason 0x%02x", pr.ReasonCode)
	}
	if err != nil {
		c.m.publishErrors.Inc()
		c.logs.Do(func() { c.log.Warn("broker: downlink not published", "topic", topic, "err", err) })
		return
	}
	c.m.downlinks.WithLabelValues(string(kind)).Inc()
}
