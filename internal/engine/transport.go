package engine

import (
	"context"
	"errors"

	"github.com/otter-ota/otter/internal/ota"

	"github.com/otter-ota/otter/sdk/wire"
)

// Device names an authenticated device.
type Device struct {
	ID      int64
	Product string
	Key     string
}

// Answer is what the engine says back to a device for one message: an
// Upgrade (an offer, or the command again) or a Reply (no upgrade, an
// error). Transports deliver it: MQTT on the device's downlink topic, HTTP
// in the response.
type Answer struct {
	Kind    wire.Kind
	Message wire.Message
}

// Devices is the contract between the engine and the device transports
// (the MQTT broker and the HTTP device API); *Engine implements it. Each
// method returns only after the engine has stored what it was told, so a
// transport acknowledges a message only once it cannot be lost: an error
// means the message was not stored, and a nil *Answer means there is
// nothing to say back. A *wire.Error of code wire.CodeUnauthorized means
// the device was deleted after it logged in.
//
// Connected and Disconnected come only from MQTT connections, Poll only
// from HTTP devices; the other methods from both.
type Devices interface {
	Connected(ctx context.Context, d Device) error
	Disconnected(ctx context.Context, d Device) error
	Inform(ctx context.Context, d Device, m wire.Inform) (*Answer, error)
	Request(ctx context.Context, d Device, m wire.Request) (*Answer, error)
	Confirm(ctx context.Context, d Device, m wire.Confirm) (*Answer, error)
	Progress(ctx context.Context, d Device, m wire.Progress) (*Answer, error)
	Poll(ctx context.Context, d Device) (*Answer, error)
}

var _ Devices = (*Engine)(nil)

// DeviceFault returns the wire code of an error of one of the Devices
// methods when the message itself caused it, so a transport answers the
// device with that code; errors of the server (unavailable, internal, a
// context that ended) are not the device's fault and return ok false.
func DeviceFault(err error) (code string, ok bool) {
	if err == nil {
		return "", false
	}
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Code, we.Code != wire.CodeInternal && we.Code != wire.CodeUnavailable
	}
	switch ota.ErrorCode(err) {
	case ota.EINVALID, ota.ECONFLICT, ota.EFORBIDDEN, ota.EMISMATCH, ota.EUNAUTHORIZED:
		return wire.CodeMalformed, true
	case ota.ENOTFOUND:
		return wire.CodeUnknownJob, true
	case ota.ETOOLARGE:
		return wire.CodeTooLarge, true
	}
	return "", false
}
