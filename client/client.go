package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// apiPath is where the operator API lives under the server's base URL.
const apiPath = "/api/v1"

// Client calls one otter server's operator API with one token. It is safe
// for concurrent use.
type Client struct {
	base      string // scheme://host[/prefix], without a trailing slash
	token     string
	http      *http.Client
	userAgent string
}

// Option changes how New builds a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc, e.g. one
// with a custom transport or TLS settings. The default is
// http.DefaultClient; timeouts come from each call's context.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client for the server at baseURL (e.g.
// "http://localhost:8080"; a trailing "/api/v1" is accepted too) that
// authenticates with token. An empty token sends no Authorization header.
func New(baseURL, token string, opts ...Option) *Client {
	base := strings.TrimRight(baseURL, "/")
	base = strings.TrimSuffix(base, apiPath)
	c := &Client{base: base, token: token, http: http.DefaultClient, userAgent: "otter-client"}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the server URL the client talks to, without "/api/v1".
func (c *Client) BaseURL() string { return c.base }

// request describes one API call.
type request struct {
	method string
	path   string // below /api/v1, segments already escaped
	query  url.Values
	// in is encoded as the JSON body when body is nil.
	in          any
	body        io.Reader
	contentType string
	// size is the length of body; negative when unknown.
	size int64
}

// call sends req and decodes a JSON answer into out (unless out is nil).
func (c *Client) call(ctx context.Context, req request, out any) error {
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body) // lets the connection be reused
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode the answer: %w", req.method, req.path, err)
	}
	return nil
}

// send performs req and returns the response of a successful call; the
// caller closes its body. Any status of 400 or above becomes an *Error.
func (c *Client) send(ctx context.Context, req request) (*http.Response, error) {
	hr, err := c.newRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, err // a *url.Error, which names the method and URL
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func (c *Client) newRequest(ctx context.Context, req request) (*http.Request, error) {
	body, size, ctype := req.body, req.size, req.contentType
	if body == nil && req.in != nil {
		b, err := json.Marshal(req.in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode the request: %w", req.method, req.path, err)
		}
		body, size, ctype = bytes.NewReader(b), int64(len(b)), "application/json"
	}
	u := c.base + apiPath + req.path
	if len(req.query) > 0 {
		u += "?" + req.query.Encode()
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.method, req.path, err)
	}
	if body != nil && size >= 0 {
		hr.ContentLength = size
		if size == 0 {
			hr.Body = http.NoBody
		}
	}
	if ctype != "" {
		hr.Header.Set("Content-Type", ctype)
	}
	hr.Header.Set("Accept", "application/json, application/problem+json")
	hr.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	return hr, nil
}

// path joins escaped path segments, so that keys with reserved characters
// stay one segment.
func path(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}
