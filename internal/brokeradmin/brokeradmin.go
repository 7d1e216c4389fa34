// Package brokeradmin declares what otter needs from an external MQTT
// broker's account store when devices log in to that broker instead of the
// embedded one: every registry device has a broker account (user name
// {product}/{device}, password the device secret) that confines it to its
// own topics, and the accounts follow the registry.
//
// Implementations live in subpackages named for the broker feature they
// drive (dynsec: Mosquitto's dynamic security plugin).
package brokeradmin

import (
	"context"

	"github.com/otter-ota/otter/sdk/wire"
)

// Device names one registry device.
type Device struct {
	Product string
	Key     string
}

// Username is the MQTT user name the device logs in with.
func (d Device) Username() string { return wire.Username(d.Product, d.Key) }

// String returns the user name, for messages.
func (d Device) String() string { return d.Username() }

// Provisioner keeps a device's broker account in step with the registry.
// The registry calls it when a device is created, its secret rotated, or
// deleted. Every method is idempotent, so a call that failed or timed out
// may simply be repeated.
type Provisioner interface {
	// CreateDevice creates the device's account with its secret (or sets
	// the secret when the account exists).
	CreateDevice(ctx context.Context, d Device, secret string) error
	// RotateSecret replaces the device's secret and disconnects its open
	// connections, so the old secret stops working at once.
	RotateSecret(ctx context.Context, d Device, secret string) error
	// DeleteDevice removes the account and disconnects its open
	// connections. Deleting an absent account is not an error.
	DeleteDevice(ctx context.Context, d Device) error
}

// Want is one registry device as Sync should find it in the broker. The
// registry keeps only hashes of secrets, so Secret is usually empty; it is
// set only where the caller happens to know it (a device just created).
type Want struct {
	Device
	Secret string
}

// Report is what Sync changed in the broker.
type Report struct {
	// Created are registry devices that had no account and now have one.
	Created []Device
	// NoSecret are the created devices whose secret was not known: their
	// account exists but nobody can log in to it until the operator
	// rotates the device's secret.
	NoSecret []Device
	// Repaired are accounts that existed but had lost their confinement
	// (role or ACLs) or otter's marker, and were set right.
	Repaired []Device
	// Deleted are otter-managed accounts of devices no longer in the
	// registry.
	Deleted []Device
	// Roles are the shared roles (of all devices, of otter's replicas)
	// that were missing or had other rules, and were set right.
	Roles []string
}

// Changed reports whether Sync changed anything.
func (r Report) Changed() bool {
	return len(r.Created)+len(r.Repaired)+len(r.Deleted)+len(r.Roles) > 0
}

// Reconciler brings a broker's accounts in line with the whole registry.
type Reconciler interface {
	Sync(ctx context.Context, registry []Want) (Report, error)
}
