package mqtt

import (
	"strings"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/sdk/wire"
)

// tree is the prefix of every topic of one device: "otter/v1/{p}/{d}/".
func tree(d *engine.Device) string { return wire.TopicPrefix + "/" + d.Product + "/" + d.Key + "/" }

// mayPublish reports whether device d may publish on topic: anywhere in its
// own tree. Topics of the tree that are not uplink kinds are let through
// so that the device gets an unknown_topic reply instead of silence; no
// device publish is ever forwarded to a subscriber.
func mayPublish(d *engine.Device, topic string) bool {
	return d != nil && strings.HasPrefix(topic, tree(d))
}

// mayReceive reports whether device d may subscribe to filter, or receive a
// message on topic filter: only its own downlink topics, by name or with a
// wildcard in the last level of its own tree.
func mayReceive(d *engine.Device, filter string) bool {
	if d == nil {
		return false
	}
	rest, ok := strings.CutPrefix(filter, tree(d))
	if !ok {
		return false
	}
	switch rest {
	case string(wire.KindUpgrade), string(wire.KindReply), "+", "#":
		return true
	}
	return false
}

// coversUpgrade reports whether filter, granted to device d, delivers its
// upgrade commands.
func coversUpgrade(d *engine.Device, filter string) bool {
	rest, ok := strings.CutPrefix(filter, tree(d))
	return ok && (rest == string(wire.KindUpgrade) || rest == "+" || rest == "#")
}

// MayPublish reports whether the device product/key may publish on topic,
// by the embedded broker's rule; for external brokers that ask otter over
// HTTP.
func MayPublish(product, key, topic string) bool {
	return mayPublish(&engine.Device{Product: product, Key: key}, topic)
}

// MayReceive reports whether the device product/key may subscribe to
// filter, or receive a message on it, by the embedded broker's rule; for
// external brokers that ask otter over HTTP.
func MayReceive(product, key, filter string) bool {
	return mayReceive(&engine.Device{Product: product, Key: key}, filter)
}
