// Package store persists otter's state behind one interface, with one
// implementation over database/sql that serves both SQLite (the embedded
// default) and PostgreSQL (clusters). Migrations are embedded and run at
// Open. Every method that changes something writes its event in the same
// transaction, so the history can never disagree with the state.
package store

import (
	"context"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// Page asks for one page of a list. After is the opaque cursor returned with
// the previous page ("" for the first); Limit is capped by the store.
type Page struct {
	Limit int
	After string
}

// Page size limits applied when a Page asks for none or for too many.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// NewDevice is a device to create: its secret is given as a hash only.
type NewDevice struct {
	Product    string
	Key        string
	Tags       map[string]string
	SecretHash []byte
	// SecretSealed is the secret sealed by the server's credential.Box;
	// it is kept only when the product is ota.ProtocolEnOS.
	SecretSealed []byte
	// Versions optionally records the version each module runs at
	// registration (module -> version), e.g. from a factory import.
	Versions map[string]string
}

// DeviceFilter narrows a device list. Zero fields do not filter.
type DeviceFilter struct {
	Product string
	// Tags must all match (name = value).
	Tags map[string]string
	// Module and Version select devices reporting Version for Module. A
	// Module alone selects devices that reported any version for it; a
	// Version alone applies to ota.DefaultModule.
	Module  string
	Version string
	Online  *bool
	// KeyPrefix matches the start of the device key (search box).
	KeyPrefix string
}

// FirmwareFilter narrows a firmware list.
type FirmwareFilter struct {
	Product string
	Module  string
}

// EventFilter narrows the event log; events are listed newest first.
type EventFilter struct {
	Kind     string
	Actor    string
	Product  string
	Device   string
	TaskID   int64
	JobID    int64
	Firmware int64
	Since    time.Time
	Until    time.Time
}

// Store is otter's persistence. Methods return *ota.Error values with code
// ENOTFOUND, ECONFLICT or EINVALID for the caller's mistakes; anything else
// is an internal error.
type Store interface {
	Rollouts
	Stats

	// Ping checks that the database answers (readiness).
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error

	CreateProduct(ctx context.Context, p *ota.Product) error
	GetProduct(ctx context.Context, key string) (ota.Product, error)
	ListProducts(ctx context.Context, page Page) ([]ota.Product, string, error)
	// UpdateProduct changes what u sets; a product that stops being
	// ota.ProtocolEnOS forgets its devices' sealed secrets.
	UpdateProduct(ctx context.Context, key string, u ProductUpdate) (ota.Product, error)
	// DeleteProduct refuses (ECONFLICT) while devices or firmware exist.
	DeleteProduct(ctx context.Context, key string) error

	// CreateDevices creates all the devices or none; duplicates answer
	// ECONFLICT with the duplicate keys in Details.
	CreateDevices(ctx context.Context, devs []NewDevice) ([]ota.Device, error)
	GetDevice(ctx context.Context, product, key string) (ota.Device, error)
	ListDevices(ctx context.Context, f DeviceFilter, page Page) ([]ota.Device, string, error)
	// SetDeviceTags replaces all of a device's tags.
	SetDeviceTags(ctx context.Context, product, key string, tags map[string]string) (ota.Device, error)
	// SetDeviceSecret replaces a device's secret: its hash, and its sealed
	// form, kept only when the product is ota.ProtocolEnOS.
	SetDeviceSecret(ctx context.Context, product, key string, secretHash, sealed []byte) error
	DeleteDevice(ctx context.Context, product, key string) error
	Credentials(ctx context.Context, product, key string) (ota.DeviceCredentials, error)
	// MarkAllOffline records every device as offline (a server's start).
	MarkAllOffline(ctx context.Context) (int64, error)

	// CreateFirmware assigns f.ID and f.CreatedAt; a duplicate
	// product/module/version answers ECONFLICT.
	CreateFirmware(ctx context.Context, f *ota.Firmware) error
	GetFirmware(ctx context.Context, id int64) (ota.Firmware, error)
	ListFirmware(ctx context.Context, f FirmwareFilter, page Page) ([]ota.Firmware, string, error)
	// DeleteFirmware marks the firmware deleted, keeping its row for the
	// history; it refuses (ECONFLICT) while a scheduled, running or paused
	// task uses it. The caller removes the file.
	DeleteFirmware(ctx context.Context, id int64) error
	// DeprecateFirmware stops new tasks from using an active firmware.
	DeprecateFirmware(ctx context.Context, id int64) (ota.Firmware, error)

	// CreateToken stores a token under the hash of its secret; it assigns
	// t.ID and t.CreatedAt.
	CreateToken(ctx context.Context, t *ota.Token, hash []byte) error
	// TokenByHash finds an unrevoked token; unknown or revoked: ENOTFOUND.
	TokenByHash(ctx context.Context, hash []byte) (ota.Token, error)
	ListTokens(ctx context.Context, page Page) ([]ota.Token, string, error)
	RevokeToken(ctx context.Context, id int64) error
	// CountTokens counts unrevoked tokens (first start creates an admin).
	CountTokens(ctx context.Context) (int, error)

	// EndSession records that the console session id was signed out, with
	// event e, so that its cookie is refused until expires; it forgets
	// sessions past their expiry.
	EndSession(ctx context.Context, id []byte, expires time.Time, e ota.Event) error
	// SessionEnded reports whether EndSession ended the session id.
	SessionEnded(ctx context.Context, id []byte) (bool, error)
	// RecordEvent records an event that goes with no other change (a
	// console sign-in).
	RecordEvent(ctx context.Context, e ota.Event) error

	ListEvents(ctx context.Context, f EventFilter, page Page) ([]ota.Event, string, error)

	// Setting reads a server-wide setting; a missing one is ENOTFOUND.
	Setting(ctx context.Context, key string) (string, error)
	// InitSetting stores value under key unless a value is already there,
	// and returns the value that is stored (safe for racing replicas).
	InitSetting(ctx context.Context, key, value string) (string, error)

	// Heartbeat creates or refreshes a replica's row and returns the time
	// it wrote; Replicas lists those heard from since a time, the
	// scheduling one first; PruneReplicas deletes those not heard from
	// since before, and the row of id.
	Heartbeat(ctx context.Context, r Replica) (time.Time, error)
	Replicas(ctx context.Context, since time.Time) ([]Replica, error)
	PruneReplicas(ctx context.Context, before time.Time, id string) error
}
