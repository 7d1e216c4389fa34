package client

import (
	"context"
	"io"
	"iter"
	"maps"
	"net/url"
	"slices"
	"strconv"
)

// DeviceFilter narrows a device list. Zero fields do not filter.
type DeviceFilter struct {
	Product string
	// Tags must all match.
	Tags map[string]string
	// Module and Version select the devices that report Version for Module.
	Module  string
	Version string
	// Online, when set, keeps only online (true) or offline (false) devices.
	Online *bool
	// Prefix matches the start of the device key.
	Prefix string
}

func (f DeviceFilter) query() url.Values {
	q := url.Values{}
	setIf(q, "product", f.Product)
	for _, k := range slices.Sorted(maps.Keys(f.Tags)) {
		q.Add("tag", k+"="+f.Tags[k])
	}
	setIf(q, "module", f.Module)
	setIf(q, "version", f.Version)
	if f.Online != nil {
		q.Set("online", strconv.FormatBool(*f.Online))
	}
	setIf(q, "prefix", f.Prefix)
	return q
}

// CreateDevice creates a device of product and returns it with its secret,
// which the server never shows again.
func (c *Client) CreateDevice(ctx context.Context, product string, d DeviceCreate) (*DeviceWithSecret, error) {
	var out DeviceWithSecret
	req := request{method: "POST", path: path("products", product, "devices"), in: d}
	if err := c.call(ctx, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ImportDevices creates the devices listed in csv, one per line as
// "key[,tag=value...]" (blank lines and # comments are ignored), all or
// none. The body is streamed; the server takes up to 100,000 lines per call.
func (c *Client) ImportDevices(ctx context.Context, product string, csv io.Reader) (*ImportResult, error) {
	var out ImportResult
	req := request{
		method: "POST", path: path("products", product, "devices", "import"),
		body: csv, contentType: "text/csv", size: -1,
	}
	if err := c.call(ctx, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Device returns one device of product.
func (c *Client) Device(ctx context.Context, product, key string) (*Device, error) {
	var out Device
	if err := c.call(ctx, request{method: "GET", path: path("products", product, "devices", key)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListDevices returns one page of the devices that match f.
func (c *Client) ListDevices(ctx context.Context, f DeviceFilter, opts ListOptions) (*Page[Device], error) {
	return getPage[Device](ctx, c, "/devices", f.query(), opts)
}

// AllDevices iterates over every device that matches f, from opts on.
func (c *Client) AllDevices(ctx context.Context, f DeviceFilter, opts ListOptions) iter.Seq2[Device, error] {
	return all(ctx, opts, func(ctx context.Context, o ListOptions) (*Page[Device], error) {
		return c.ListDevices(ctx, f, o)
	})
}

// SetDeviceTags replaces all the tags of a device and returns the device.
func (c *Client) SetDeviceTags(ctx context.Context, product, key string, tags map[string]string) (*Device, error) {
	if tags == nil {
		tags = map[string]string{} // "no tags", not a missing field
	}
	var out Device
	req := request{
		method: "PUT", path: path("products", product, "devices", key, "tags"),
		in: struct {
			Tags map[string]string `json:"tags"`
		}{tags},
	}
	if err := c.call(ctx, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateDeviceSecret gives a device a new secret and returns it; the old
// one stops working at once.
func (c *Client) RotateDeviceSecret(ctx context.Context, product, key string) (*DeviceWithSecret, error) {
	var out DeviceWithSecret
	req := request{method: "POST", path: path("products", product, "devices", key, "rotate-secret")}
	if err := c.call(ctx, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteDevice deletes a device.
func (c *Client) DeleteDevice(ctx context.Context, product, key string) error {
	return c.call(ctx, request{method: "DELETE", path: path("products", product, "devices", key)}, nil)
}

func setIf(q url.Values, name, value string) {
	if value != "" {
		q.Set(name, value)
	}
}
