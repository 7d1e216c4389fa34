package client

import (
	"context"
	"iter"
)

// CreateProduct creates a product. Its key must match
// ^[a-z0-9][a-z0-9._-]{0,63}$.
func (c *Client) CreateProduct(ctx context.Context, p ProductCreate) (*Product, error) {
	var out Product
	if err := c.call(ctx, request{method: "POST", path: "/products", in: p}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateProduct changes the fields u sets. A product switched to protocol
// "enos" needs its older devices' secrets rotated before they can log in
// with EnOS's protocol.
func (c *Client) UpdateProduct(ctx context.Context, key string, u ProductUpdate) (*Product, error) {
	var out Product
	if err := c.call(ctx, request{method: "PATCH", path: path("products", key), in: u}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Product returns the product with the given key.
func (c *Client) Product(ctx context.Context, key string) (*Product, error) {
	var out Product
	if err := c.call(ctx, request{method: "GET", path: path("products", key)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListProducts returns one page of products.
func (c *Client) ListProducts(ctx context.Context, opts ListOptions) (*Page[Product], error) {
	return getPage[Product](ctx, c, "/products", nil, opts)
}

// AllProducts iterates over every product from opts on, fetching page after
// page. An error ends the iteration.
func (c *Client) AllProducts(ctx context.Context, opts ListOptions) iter.Seq2[Product, error] {
	return all(ctx, opts, c.ListProducts)
}

// DeleteProduct deletes a product; the server refuses (409) while it still
// has devices or firmware.
func (c *Client) DeleteProduct(ctx context.Context, key string) error {
	return c.call(ctx, request{method: "DELETE", path: path("products", key)}, nil)
}
