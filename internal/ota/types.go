package ota

import (
	"time"
)

// DefaultModule is the module of a device that has a single firmware.
const DefaultModule = "default"

// Product is a device model. Firmware and devices belong to one product.
type Product struct {
	Key         string `json:"key"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Protocol is the device protocol the product's devices may speak
	// besides otter's own: ProtocolOtter (only otter's) or ProtocolEnOS
	// (EnOS's as well).
	Protocol  string    `json:"protocol"`
	CreatedAt time.Time `json:"created_at"`
}

// Device protocols of a product (Product.Protocol).
const (
	// ProtocolOtter: devices speak otter's protocol only; the server keeps
	// only a hash of each device secret.
	ProtocolOtter = "otter"
	// ProtocolEnOS: devices may also speak EnOS's device protocol, whose
	// login signs with the secret itself, so the server keeps each secret
	// encrypted (sealed) as well.
	ProtocolEnOS = "enos"
)

// ValidProtocol reports whether p names a product protocol.
func ValidProtocol(p string) bool { return p == ProtocolOtter || p == ProtocolEnOS }

// Device is one physical device, identified by its key within a product.
// Its secret is never part of this type: the store keeps only a hash.
type Device struct {
	ID       int64             `json:"-"`
	Product  string            `json:"product"`
	Key      string            `json:"key"`
	Tags     map[string]string `json:"tags"`
	Versions map[string]string `json:"versions"` // module -> version last reported
	Online   bool              `json:"online"`
	// LastSeen is the last time the device connected, disconnected or sent
	// a message, to within about ten seconds (a message that soon after
	// the last stored one is written later); nil until it has done any of
	// those.
	LastSeen  *time.Time `json:"last_seen"`
	CreatedAt time.Time  `json:"created_at"`
}

// Firmware is one version of one module of one product. It is immutable once
// added, except for its verification state.
type Firmware struct {
	ID      int64  `json:"id"`
	Product string `json:"product"`
	Module  string `json:"module"`
	Version string `json:"version"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"` // lowercase hex
	// Signature is the base64 ed25519 signature over Manifest().Bytes().
	Signature string `json:"signature"`
	// FromVersions lists the versions this firmware may upgrade from; empty
	// means any version lower than Version.
	FromVersions   []string          `json:"from_versions"`
	Params         map[string]string `json:"params"`
	Description    string            `json:"description"`
	VerifyRequired bool              `json:"verify_required"`
	// AllowDowngrade lets devices install this firmware over a higher
	// version (an emergency rollback); devices refuse downgrades otherwise.
	AllowDowngrade bool `json:"allow_downgrade"`
	// VerifiedBy is the verification task whose success released this
	// firmware for batch tasks; zero while unverified.
	VerifiedBy int64      `json:"verified_by,omitempty"`
	VerifiedAt *time.Time `json:"verified_at,omitempty"`
	// Status is where the firmware is in its lifecycle.
	Status FirmwareStatus `json:"status"`
	// BlobKey names the file in the blob store.
	BlobKey   string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// FirmwareStatus is a firmware's place in its lifecycle.
type FirmwareStatus string

// A firmware is active when uploaded; deprecated, running tasks go on but
// no new task may use it; deleted, its file is gone and only the record
// stays, so the tasks, jobs and events that used it still name it.
const (
	FirmwareActive     FirmwareStatus = "active"
	FirmwareDeprecated FirmwareStatus = "deprecated"
	FirmwareDeleted    FirmwareStatus = "deleted"
)

// Mode is how a task delivers its firmware.
type Mode string

// The two upgrade modes.
const (
	ModePush    Mode = "push"    // the server sends the upgrade command
	ModeRequest Mode = "request" // the device asks, the server offers
)

// Valid reports whether m is a known mode.
func (m Mode) Valid() bool { return m == ModePush || m == ModeRequest }

// Role is what an operator token may do.
type Role string

// Operator roles, each including the rights of the one before.
const (
	RoleViewer   Role = "viewer"   // read everything
	RoleOperator Role = "operator" // read, and manage devices, firmware and tasks
	RoleAdmin    Role = "admin"    // everything, tokens included
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether a token of role r may act as role need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && need.rank() > 0 }

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Token is an operator API token. Only a hash of its secret is stored.
type Token struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// Event is an immutable record of one change, the history an operator sees.
type Event struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Actor      string    `json:"actor"`  // token name, "device", "engine" or "system"
	Kind       string    `json:"kind"`   // what changed: product, device, firmware, task, job, token
	Action     string    `json:"action"` // e.g. created, deleted, notified, failed
	Product    string    `json:"product,omitempty"`
	Device     string    `json:"device,omitempty"`
	FirmwareID int64     `json:"firmware_id,omitempty"`
	TaskID     int64     `json:"task_id,omitempty"`
	JobID      int64     `json:"job_id,omitempty"`
	Message    string    `json:"message,omitempty"`
	// Data carries details specific to the action (a job's new state and
	// percent, a failure code), as a flat string map so that it stays
	// readable in every client.
	Data map[string]string `json:"data,omitempty"`
}

// Event kinds.
const (
	KindProduct  = "product"
	KindDevice   = "device"
	KindFirmware = "firmware"
	KindTask     = "task"
	KindJob      = "job"
	KindToken    = "token"
	// KindSession is a console sign-in (failed ones included) or sign-out.
	KindSession = "session"
)

// ActionPolicyChanged is the action of a task event that records an edit
// of the task's policy; its Data maps each changed field to "old -> new".
const ActionPolicyChanged = "policy_changed"
