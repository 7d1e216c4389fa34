package mqtt

import (
	"strings"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/enos"
	"github.com/otter-ota/otter/sdk/wire"
)

// tree is the prefix of every topic of one device: "otter/v1/{p}/{d}/".
func tree(d *engine.Device) string { return wire.TopicPrefix + "/" + d.Product + "/" + d.Key + "/" }

// mayPublish reports whether device d may publish on topic: anywhere in its
// own tree. Topics of the tree that are not uplink kinds are let through
// so that the device gets an unknown_topic reply instead of silence; no
// device publish is ever forwarded to a subscriber.
//
// A device logged in with EnOS's protocol may also publish anywhere in its
// EnOS tree /sys/{product}/{device}/.
func mayPublish(d *engine.Device, enosLogin bool, topic string) bool {
	return d != nil && (strings.HasPrefix(topic, tree(d)) || enosLogin && strings.HasPrefix(topic, enos.Tree(d.Product, d.Key)))
}

// mayReceive reports whether device d may subscribe to filter, or receive a
// message on topic filter: only its own downlink topics, by name or with a
// wildcard in the last level of its own tree.
//
// A device logged in with EnOS's protocol may also subscribe to any filter
// inside its EnOS tree: EnOS's SDKs subscribe at connect to topics of
// features otter does not have, which then simply carry nothing.
func mayReceive(d *engine.Device, enosLogin bool, filter string) bool {
	if d == nil {
		return false
	}
	if enosLogin && strings.HasPrefix(filter, enos.Tree(d.Product, d.Key)) {
		return true
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
