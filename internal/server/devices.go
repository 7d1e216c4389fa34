package server

import (
	"context"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/mqtt"
	"github.com/otter-ota/otter/sdk/wire"
)

// brokerDevices lets the broker hand device traffic to the engine.
type brokerDevices struct{ e *engine.Engine }

func dev(d mqtt.Device) engine.Device { return engine.Device{ID: d.ID, Product: d.Product, Key: d.Key} }

func answer(a *engine.Answer, err error) (*mqtt.Answer, error) {
	if a == nil || err != nil {
		return nil, err
	}
	return &mqtt.Answer{Kind: a.Kind, Message: a.Message}, nil
}

func (b brokerDevices) Connected(ctx context.Context, d mqtt.Device) error {
	return b.e.Connected(ctx, dev(d))
}

func (b brokerDevices) Disconnected(ctx context.Context, d mqtt.Device) error {
	return b.e.Disconnected(ctx, dev(d))
}

func (b brokerDevices) Inform(ctx context.Context, d mqtt.Device, m wire.Inform) (*mqtt.Answer, error) {
	return answer(b.e.Inform(ctx, dev(d), m))
}

func (b brokerDevices) Request(ctx context.Context, d mqtt.Device, m wire.Request) (*mqtt.Answer, error) {
	return answer(b.e.Request(ctx, dev(d), m))
}

func (b brokerDevices) Confirm(ctx context.Context, d mqtt.Device, m wire.Confirm) (*mqtt.Answer, error) {
	return answer(b.e.Confirm(ctx, dev(d), m))
}

func (b brokerDevices) Progress(ctx context.Context, d mqtt.Device, m wire.Progress) (*mqtt.Answer, error) {
	return answer(b.e.Progress(ctx, dev(d), m))
}
