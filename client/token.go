package client

import (
	"context"
	"iter"
	"strconv"
)

// CreateToken creates an operator token (admin only) and returns it with
// its secret, which the server never shows again.
func (c *Client) CreateToken(ctx context.Context, t TokenCreate) (*TokenWithSecret, error) {
	var out TokenWithSecret
	if err := c.call(ctx, request{method: "POST", path: "/tokens", in: t}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListTokens returns one page of tokens (admin only), revoked ones included.
func (c *Client) ListTokens(ctx context.Context, opts ListOptions) (*Page[Token], error) {
	return getPage[Token](ctx, c, "/tokens", nil, opts)
}

// AllTokens iterates over every token from opts on.
func (c *Client) AllTokens(ctx context.Context, opts ListOptions) iter.Seq2[Token, error] {
	return all(ctx, opts, c.ListTokens)
}

// RevokeToken revokes a token (admin only); requests with it fail with 401
// from then on.
func (c *Client) RevokeToken(ctx context.Context, id int64) error {
	return c.call(ctx, request{method: "DELETE", path: "/tokens/" + strconv.FormatInt(id, 10)}, nil)
}
