package client

import (
	"crypto/ed25519"
	"encoding/json"
	"time"
)

// Role is what an operator token may do; each role includes the rights of
// the one before.
type Role string

// Operator roles.
const (
	RoleViewer   Role = "viewer"   // read everything
	RoleOperator Role = "operator" // read, and manage products, devices, firmware and tasks
	RoleAdmin    Role = "admin"    // everything, tokens included
)

// Product is a device model; firmware and devices belong to one product.
type Product struct {
	Key         string `json:"key"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Protocol is "otter", or "enos" when the devices may also speak
	// EnOS's device protocol.
	Protocol  string    `json:"protocol"`
	CreatedAt time.Time `json:"created_at"`
}

// ProductCreate is the body of CreateProduct.
type ProductCreate struct {
	Key         string `json:"key"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
}

// ProductUpdate is the body of UpdateProduct: nil fields stay unchanged.
type ProductUpdate struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
	Protocol    *string `json:"protocol,omitempty"`
}

// Device is one physical device, identified by its key within a product.
type Device struct {
	Key      string            `json:"key"`
	Product  string            `json:"product"`
	Tags     map[string]string `json:"tags"`
	Versions map[string]string `json:"versions"` // module -> version last reported
	Online   bool              `json:"online"`
	// LastSeen is nil until the device has connected or sent a message.
	LastSeen  *time.Time `json:"last_seen"`
	CreatedAt time.Time  `json:"created_at"`
}

// DeviceCreate is the body of CreateDevice.
type DeviceCreate struct {
	Key  string            `json:"key"`
	Tags map[string]string `json:"tags,omitempty"`
}

// DeviceWithSecret is a device together with its secret, which the server
// shows only when it creates the device or rotates the secret.
type DeviceWithSecret struct {
	Device
	// Secret is 64 lowercase hex characters; the server keeps only a hash.
	Secret string `json:"secret"`
}

// MarshalJSON writes the secret right after the device's identity, so that
// a person reading the output sees it among the first fields.
func (d DeviceWithSecret) MarshalJSON() ([]byte, error) {
	// The outer fields hide the embedded ones of the same name.
	type device Device
	return json.Marshal(struct {
		Key     string `json:"key"`
		Product string `json:"product"`
		Secret  string `json:"secret"`
		device
	}{d.Key, d.Product, d.Secret, device(d.Device)})
}

// ImportResult is the answer to ImportDevices.
type ImportResult struct {
	Created int              `json:"created"`
	Devices []ImportedDevice `json:"devices"`
}

// ImportedDevice is one device created by ImportDevices, with its secret.
type ImportedDevice struct {
	Key    string `json:"key"`
	Secret string `json:"secret"`
}

// Firmware is one version of one module of one product. It is immutable
// once added, except for its verification state.
type Firmware struct {
	ID      int64  `json:"id"`
	Product string `json:"product"`
	Module  string `json:"module"`
	Version string `json:"version"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"` // lowercase hex
	// Signature is the base64 ed25519 signature of the firmware's manifest.
	Signature string `json:"signature"`
	// FromVersions lists the versions this firmware may upgrade from; empty
	// means any lower version.
	FromVersions   []string          `json:"from_versions"`
	Params         map[string]string `json:"params"`
	Description    string            `json:"description"`
	VerifyRequired bool              `json:"verify_required"`
	// AllowDowngrade lets devices install the firmware over a higher
	// version.
	AllowDowngrade bool `json:"allow_downgrade"`
	// VerifiedBy is the verification task that released the firmware for
	// batch tasks; zero while unverified.
	VerifiedBy int64      `json:"verified_by,omitempty"`
	VerifiedAt *time.Time `json:"verified_at,omitempty"`
	// Status is active, deprecated (no new task may use it) or deleted
	// (its file is gone, its record stays).
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// Token is an operator API token, without its secret.
type Token struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// TokenCreate is the body of CreateToken.
type TokenCreate struct {
	Name string `json:"name,omitempty"`
	Role Role   `json:"role"`
}

// TokenWithSecret is a new token together with the bearer value, which the
// server shows only once.
type TokenWithSecret struct {
	// Secret is the value to send as "Authorization: Bearer ..." (otr_...).
	Secret string `json:"token"`
	Token
}

// Event is an immutable record of one change, newest first in lists.
type Event struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Actor      string    `json:"actor"`  // token name, "device", "engine" or "system"
	Kind       string    `json:"kind"`   // product, device, firmware, task, job, token
	Action     string    `json:"action"` // e.g. created, deleted, failed
	Product    string    `json:"product,omitempty"`
	Device     string    `json:"device,omitempty"`
	FirmwareID int64     `json:"firmware_id,omitempty"`
	TaskID     int64     `json:"task_id,omitempty"`
	JobID      int64     `json:"job_id,omitempty"`
	Message    string    `json:"message,omitempty"`
	// Data carries details specific to the action, e.g. a job's state.
	Data map[string]string `json:"data,omitempty"`
}

// SigningKey is the public key devices use to check firmware signatures.
type SigningKey struct {
	Algorithm string            `json:"algorithm"` // "ed25519"
	PublicKey ed25519.PublicKey `json:"public_key"`
}
