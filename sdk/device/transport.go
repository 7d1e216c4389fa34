package device

import (
	"context"
	"errors"

	"github.com/otter-ota/otter/sdk/wire"
)

// transport carries protocol messages between the client and the server:
// MQTT, or the HTTP device API. Tests can run the whole client over HTTP
// against an httptest server, with no broker.
type transport interface {
	// start begins connecting in the background and reports to s.
	start(ctx context.Context, s sink) error
	// subscribe prepares a fresh connection to receive downlinks.
	subscribe(ctx context.Context) error
	// send delivers one uplink message and waits for the server to take
	// it; a synchronous answer (HTTP request) comes back as a downlink.
	send(ctx context.Context, m wire.Message) (*downlink, error)
	// poll asks for a pending upgrade (HTTP only); nil when there is none.
	poll(ctx context.Context) (*downlink, error)
	// polls reports whether the client must call poll to hear downlinks.
	polls() bool
	// stop disconnects and waits for the transport's goroutines.
	stop(ctx context.Context)
}

// sink is what a transport reports to. Its methods must not block.
type sink interface {
	up()
	down()
	connectError(err error)
	deliver(d downlink)
}

// downlink is one message for the device.
type downlink struct {
	kind    wire.Kind
	payload []byte
}

// permanentError marks an error that retrying cannot fix, such as a message
// the server finds malformed.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
