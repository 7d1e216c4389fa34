package client

import (
	"context"
	"fmt"
	"io"
	"iter"
	"maps"
	"net/url"
	"slices"
	"strconv"
)

// FirmwareUpload describes a firmware file to add.
type FirmwareUpload struct {
	Product string
	Version string
	// Module defaults to "default" on the server.
	Module string
	// From lists the versions the firmware may upgrade from; empty means
	// any lower version.
	From []string
	// SHA256, when set (lowercase or uppercase hex), must match the file;
	// otherwise the server answers 422 and keeps nothing.
	SHA256         string
	VerifyRequired bool
	AllowDowngrade bool
	// Params are passed to the devices with the upgrade.
	Params      map[string]string
	Description string
	// Size is the length of the file in bytes; 0 means unknown, and the
	// body is then sent chunked.
	Size int64
	// Progress, when set, is called with the number of bytes sent so far,
	// from the goroutine that writes the request.
	Progress func(sent int64)
}

func (u FirmwareUpload) query() url.Values {
	q := url.Values{}
	setIf(q, "product", u.Product)
	setIf(q, "version", u.Version)
	setIf(q, "module", u.Module)
	for _, f := range u.From {
		q.Add("from", f)
	}
	setIf(q, "sha256", u.SHA256)
	if u.VerifyRequired {
		q.Set("verify_required", "true")
	}
	if u.AllowDowngrade {
		q.Set("allow_downgrade", "true")
	}
	for _, k := range slices.Sorted(maps.Keys(u.Params)) {
		q.Add("param", k+"="+u.Params[k])
	}
	setIf(q, "description", u.Description)
	return q
}

// UploadFirmware adds a firmware, streaming its file from r.
func (c *Client) UploadFirmware(ctx context.Context, u FirmwareUpload, r io.Reader) (*Firmware, error) {
	size := u.Size
	if size <= 0 {
		size = -1
	}
	if u.Progress != nil {
		r = &progressReader{r: r, report: u.Progress}
	}
	var out Firmware
	req := request{
		method: "POST", path: "/firmware", query: u.query(),
		body: r, contentType: "application/octet-stream", size: size,
	}
	if err := c.call(ctx, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// progressReader reports the running total of the bytes read through it.
type progressReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += int64(n)
		p.report(p.n)
	}
	return n, err
}

// FirmwareFilter narrows a firmware list. Zero fields do not filter.
type FirmwareFilter struct {
	Product string
	Module  string
}

// Firmware returns the firmware with the given id.
func (c *Client) Firmware(ctx context.Context, id int64) (*Firmware, error) {
	var out Firmware
	if err := c.call(ctx, request{method: "GET", path: firmwarePath(id)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListFirmware returns one page of the firmware that matches f.
func (c *Client) ListFirmware(ctx context.Context, f FirmwareFilter, opts ListOptions) (*Page[Firmware], error) {
	q := url.Values{}
	setIf(q, "product", f.Product)
	setIf(q, "module", f.Module)
	return getPage[Firmware](ctx, c, "/firmware", q, opts)
}

// AllFirmware iterates over every firmware that matches f, from opts on.
func (c *Client) AllFirmware(ctx context.Context, f FirmwareFilter, opts ListOptions) iter.Seq2[Firmware, error] {
	return all(ctx, opts, func(ctx context.Context, o ListOptions) (*Page[Firmware], error) {
		return c.ListFirmware(ctx, f, o)
	})
}

// DownloadFirmware writes the file of firmware id to w and returns the
// number of bytes written. It does not check the hash: compare it with the
// firmware's SHA256 if w is not already doing so.
func (c *Client) DownloadFirmware(ctx context.Context, id int64, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, request{method: "GET", path: firmwarePath(id) + "/file"})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("download firmware %d: %w", id, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("download firmware %d: got %d of %d bytes", id, n, resp.ContentLength)
	}
	return n, nil
}

// DeleteFirmware deletes a firmware's file and marks it deleted (its record
// stays); the server refuses (409) while a scheduled, running or paused
// task uses it.
func (c *Client) DeleteFirmware(ctx context.Context, id int64) error {
	return c.call(ctx, request{method: "DELETE", path: firmwarePath(id)}, nil)
}

// DeprecateFirmware stops new tasks from using a firmware; running tasks
// go on.
func (c *Client) DeprecateFirmware(ctx context.Context, id int64) (*Firmware, error) {
	var out Firmware
	if err := c.call(ctx, request{method: "POST", path: firmwarePath(id) + "/deprecate"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func firmwarePath(id int64) string {
	return "/firmware/" + strconv.FormatInt(id, 10)
}
