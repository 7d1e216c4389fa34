package dynsec

import (
	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/sdk/wire"
)

// Names otter gives its objects in the plugin. Clients with the marker as
// textname are otter's: Sync deletes them when their device is gone and
// leaves every other client alone.
const (
	Marker      = "otter-device"
	DeviceRole  = "otter-device"  // shared by every device: denies all that its own role does not allow
	RolePrefix  = "otter-device/" // + {product}/{device}: each device's own role
	ServiceRole = "otter-service"
)

// Priorities inside a role: the first matching rule decides, from the
// highest priority down. A device's own role comes before the shared one.
const (
	prioExact = 30
	prioAllow = 20
	prioDeny  = 0
	prioOwn   = 1
	prioShare = 0
)

// RoleName is the name of device d's own role.
func RoleName(d brokeradmin.Device) string { return RolePrefix + d.Username() }

// DeviceACLs, in a device's own role and before the shared DeviceRole's
// denials, confine device d exactly as the embedded broker does
// (internal/mqtt/acl.go): it may publish anywhere under its own tree
// otter/v1/{product}/{device}/, subscribe only to its own upgrade and reply
// topics (by name, or with + or # as the tree's last level), and receive
// nothing but its own upgrade and reply messages, so a device subscribed
// to its own # does not see its own uplinks, and a device that took over
// another's client id and session receives none of its messages.
//
// The plugin rewrites its whole file after every change, so a device's
// share of it is kept small: its own role holds only what is particular to
// it.
func DeviceACLs(d brokeradmin.Device) []ACL {
	root := wire.TopicPrefix + "/" + d.Username()
	tree := root + "/"
	acls := []ACL{
		{PublishSend, root, prioExact, false},
		{PublishSend, tree + "#", prioAllow, true},
		{PublishReceive, tree + string(wire.KindUpgrade), prioAllow, true},
		{PublishReceive, tree + string(wire.KindReply), prioAllow, true},
	}
	for _, last := range []string{string(wire.KindUpgrade), string(wire.KindReply), "+", "#"} {
		acls = append(acls, ACL{SubscribeLiteral, tree + last, prioAllow, true})
	}
	return acls
}

// DenyACLs, the shared DeviceRole's, deny a device everything its own
// role does not allow, whatever the broker's default access is. "#" does
// not match topics that start with "$": the control topic is denied by
// name, the rest ($SYS, $share) by the plugin's defaults.
func DenyACLs() []ACL {
	return []ACL{
		{PublishSend, "#", prioDeny, false},
		{PublishSend, "$CONTROL/#", prioDeny, false},
		{PublishReceive, "#", prioDeny, false},
		{SubscribePattern, "#", prioDeny, false},
		{SubscribePattern, "$CONTROL/#", prioDeny, false},
	}
}

// ServiceACLs let otter's replicas receive every device's uplinks, also
// through a shared subscription ($share/{group}/otter/v1/...), and publish
// downlinks.
func ServiceACLs() []ACL {
	all := wire.TopicPrefix + "/#"
	return []ACL{
		{SubscribePattern, all, prioAllow, true},
		{SubscribePattern, "$share/+/" + all, prioAllow, true},
		{PublishReceive, all, prioAllow, true},
		{PublishSend, all, prioAllow, true},
	}
}
