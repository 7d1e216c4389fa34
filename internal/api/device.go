package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// DeviceWithSecret is a device together with its secret, answered only
// when the secret is made: the server keeps a hash and cannot show it again.
type DeviceWithSecret struct {
	ota.Device
	Secret string `json:"secret" doc:"The device secret, 64 hex characters. Shown only once."`
}

type devicePath struct {
	Product string `path:"product" doc:"Product key."`
	Device  string `path:"device" doc:"Device key."`
}

type createDeviceInput struct {
	Product string `path:"product" doc:"Product key."`
	Body    struct {
		Key  string            `json:"key" doc:"Device key: ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$" example:"sn-000123"`
		Tags map[string]string `json:"tags,omitempty" doc:"Tags, name to value."`
	}
}

type setTagsInput struct {
	Product string `path:"product" doc:"Product key."`
	Device  string `path:"device" doc:"Device key."`
	Body    struct {
		Tags map[string]string `json:"tags" doc:"The device's new tags; they replace all of its tags."`
	}
}

type listDevicesInput struct {
	Product string   `query:"product" doc:"Only devices of this product."`
	Tag     []string `query:"tag,explode" doc:"Only devices with this tag, as name=value; repeat to require several."`
	Module  string   `query:"module" doc:"The module whose reported version must match version (default: default)."`
	Version string   `query:"version" doc:"Only devices reporting this version of the module."`
	Online  string   `query:"online" enum:"true,false" doc:"Only online (true) or offline (false) devices."`
	Prefix  string   `query:"prefix" doc:"Only devices whose key starts with this."`
	PageQuery
}

func (a *API) deviceRoutes() {
	dev := Prefix + "/products/{product}/devices/{device}"
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "create-device", Method: http.MethodPost, Path: Prefix + "/products/{product}/devices",
		Summary: "Register a device", Description: "Answers the device with its secret, shown only here. Running dynamic tasks it matches take it at once (its job awaits its first version report).",
		Tags: []string{"devices"}, DefaultStatus: http.StatusCreated,
	}, a.createDevice)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "list-devices", Method: http.MethodGet, Path: Prefix + "/devices",
		Summary: "List devices", Tags: []string{"devices"},
	}, a.listDevices)
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "get-device", Method: http.MethodGet, Path: dev,
		Summary: "Get a device", Tags: []string{"devices"},
	}, a.getDevice)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "set-device-tags", Method: http.MethodPut, Path: dev + "/tags",
		Summary: "Replace a device's tags", Description: "Running dynamic tasks the device now matches take it before this answers.", Tags: []string{"devices"},
	}, a.setDeviceTags)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "rotate-device-secret", Method: http.MethodPost, Path: dev + "/rotate-secret",
		Summary: "Give a device a new secret", Description: "The old secret stops working at once: the device API refuses it and the device's MQTT sessions are closed.",
		Tags: []string{"devices"},
	}, a.rotateSecret)
	register(a, ota.RoleOperator, huma.Operation{
		OperationID: "delete-device", Method: http.MethodDelete, Path: dev,
		Summary: "Delete a device", Tags: []string{"devices"}, DefaultStatus: http.StatusNoContent,
		Description: "Its active jobs are cancelled (code device_deleted), its secret stops working and its MQTT sessions are closed at once.",
	}, a.deleteDevice)
}

func (a *API) createDevice(ctx context.Context, in *createDeviceInput) (*bodyOutput[DeviceWithSecret], error) {
	if err := checkDeviceKey(in.Body.Key); err != nil {
		return nil, onField("key", err)
	}
	if err := tagRule.checkMap(in.Body.Tags); err != nil {
		return nil, onField("tags", err)
	}
	p, err := a.store.GetProduct(ctx, in.Product)
	if err != nil {
		return nil, err
	}
	secret, err := credential.NewDeviceSecret()
	if err != nil {
		return nil, err
	}
	sealed, err := a.seal(p.Protocol, in.Product, in.Body.Key, secret)
	if err != nil {
		return nil, err
	}
	devs, err := a.store.CreateDevices(ctx, []store.NewDevice{{
		Product: in.Product, Key: in.Body.Key, Tags: in.Body.Tags, SecretHash: credential.Hash(secret), SecretSealed: sealed,
	}})
	if err != nil {
		return nil, onField("key", err) // a device of that key exists
	}
	a.devicesChanged(ctx, devs)
	a.revoke.CredentialsChanged(in.Product, in.Body.Key)
	if err := a.account(ctx, "created", in.Product, in.Body.Key, func(ctx context.Context, d brokeradmin.Device) error {
		return a.accounts.CreateDevice(ctx, d, secret)
	}); err != nil {
		return nil, err
	}
	return bodyOf(DeviceWithSecret{Device: devs[0], Secret: secret}), nil
}

// devicesChanged tells the engine that devices were created or re-tagged,
// so that running dynamic tasks take those that now match. The registry
// change is committed already and stands: when the engine cannot take it
// now, that is logged, and the devices join when they next report a
// version.
func (a *API) devicesChanged(ctx context.Context, devs []ota.Device) {
	if a.engine == nil || len(devs) == 0 {
		return
	}
	ids := make([]int64, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	if err := a.engine.DevicesChanged(ctx, ids); err != nil {
		a.log.Error("dynamic tasks not told of changed devices", "devices", len(ids), "err", err)
	}
}

func (a *API) listDevices(ctx context.Context, in *listDevicesInput) (*pageOutput[ota.Device], error) {
	f, err := in.filter()
	if err != nil {
		return nil, err
	}
	items, next, err := a.store.ListDevices(ctx, f, in.page())
	if err != nil {
		return nil, err
	}
	return pageOf(items, next), nil
}

func (in *listDevicesInput) filter() (store.DeviceFilter, error) {
	tags, err := tagRule.parseAll(in.Tag)
	if err != nil {
		return store.DeviceFilter{}, err
	}
	f := store.DeviceFilter{Product: in.Product, Tags: tags, Module: in.Module, Version: in.Version, KeyPrefix: in.Prefix}
	if f.Version != "" && f.Module == "" {
		f.Module = ota.DefaultModule
	}
	if in.Online != "" {
		online := in.Online == "true"
		f.Online = &online
	}
	return f, nil
}

func (a *API) getDevice(ctx context.Context, in *devicePath) (*bodyOutput[ota.Device], error) {
	d, err := a.store.GetDevice(ctx, in.Product, in.Device)
	if err != nil {
		return nil, err
	}
	return bodyOf(d), nil
}

func (a *API) setDeviceTags(ctx context.Context, in *setTagsInput) (*bodyOutput[ota.Device], error) {
	if err := tagRule.checkMap(in.Body.Tags); err != nil {
		return nil, onField("tags", err)
	}
	tags := in.Body.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	d, err := a.store.SetDeviceTags(ctx, in.Product, in.Device, tags)
	if err != nil {
		return nil, err
	}
	a.devicesChanged(ctx, []ota.Device{d})
	return bodyOf(d), nil
}

// Revoker is told, before the API answers, that a device's credentials
// changed (created, secret rotated, deleted), so that whatever its former
// credentials opened ends at once: logins cached by the device API, live
// MQTT sessions. The server wires it to both; it must not block on the
// network.
type Revoker interface {
	CredentialsChanged(product, key string)
}

type noRevoker struct{}

func (noRevoker) CredentialsChanged(string, string) {}

func (a *API) rotateSecret(ctx context.Context, in *devicePath) (*bodyOutput[DeviceWithSecret], error) {
	p, err := a.store.GetProduct(ctx, in.Product)
	if err != nil {
		return nil, err
	}
	secret, err := credential.NewDeviceSecret()
	if err != nil {
		return nil, err
	}
	sealed, err := a.seal(p.Protocol, in.Product, in.Device, secret)
	if err != nil {
		return nil, err
	}
	if err := a.store.SetDeviceSecret(ctx, in.Product, in.Device, credential.Hash(secret), sealed); err != nil {
		return nil, err
	}
	a.revoke.CredentialsChanged(in.Product, in.Device)
	if err := a.account(ctx, "given a new secret", in.Product, in.Device, func(ctx context.Context, d brokeradmin.Device) error {
		return a.accounts.RotateSecret(ctx, d, secret)
	}); err != nil {
		return nil, err
	}
	d, err := a.store.GetDevice(ctx, in.Product, in.Device)
	if err != nil {
		return nil, err
	}
	return bodyOf(DeviceWithSecret{Device: d, Secret: secret}), nil
}

// deleteDevice deletes through the engine, which cancels the device's
// active jobs in the same transaction. A process without an engine deletes
// in the store; the engine cancels such orphaned jobs when it starts.
func (a *API) deleteDevice(ctx context.Context, in *devicePath) (*struct{}, error) {
	var err error
	if a.engine != nil {
		err = a.engine.DeleteDevice(ctx, in.Product, in.Device)
	} else {
		err = a.store.DeleteDevice(ctx, in.Product, in.Device)
	}
	if err != nil {
		return nil, err
	}
	a.revoke.CredentialsChanged(in.Product, in.Device)
	if err := a.account(ctx, "deleted", in.Product, in.Device, func(ctx context.Context, d brokeradmin.Device) error {
		return a.accounts.DeleteDevice(ctx, d)
	}); err != nil {
		return nil, err
	}
	return nil, nil
}

// account applies a registry change that is already committed to the
// device's account in the external broker, when otter keeps those. A
// failure fails the request, so the operator learns that the two differ,
// and says how to set them right.
func (a *API) account(ctx context.Context, what, product, key string, f func(context.Context, brokeradmin.Device) error) error {
	if a.accounts == nil {
		return nil
	}
	d := brokeradmin.Device{Product: product, Key: key}
	if err := f(ctx, d); err != nil {
		a.log.Error("broker account not changed", "device", d.String(), "change", what, "err", err)
		return ota.Errorf(ota.EUNAVAILABLE, "device %s was %s in the registry, but its account in the MQTT broker could not be changed (%v): "+
			"repeat the request once the broker answers, or run otter broker sync", d, what, err)
	}
	return nil
}

// seal returns the sealed form of a new device secret when its product's
// protocol needs the secret itself at login (EnOS), nil otherwise: other
// products keep the hash only. The store keeps it only if the product is
// still an EnOS one when it writes the device.
func (a *API) seal(protocol, product, key, secret string) ([]byte, error) {
	if protocol != ota.ProtocolEnOS || a.secrets == nil {
		return nil, nil
	}
	sealed, err := a.secrets.Seal(product, key, secret)
	if err != nil {
		return nil, fmt.Errorf("seal the secret of device %s/%s: %w", product, key, err)
	}
	return sealed, nil
}
