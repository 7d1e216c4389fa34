package device

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

// httpTransport speaks the HTTP device API: uplinks are POSTs, downlinks
// are answers to them and to polls of the pending upgrade.
type httpTransport struct {
	cfg  Config
	base string
}

func newHTTPTransport(cfg Config) *httpTransport {
	return &httpTransport{cfg: cfg, base: strings.TrimRight(cfg.HTTPBase, "/")}
}

// start has no connection to make: the device counts as connected at
// once, so the client sends its inform and begins to poll.
func (t *httpTransport) start(_ context.Context, s sink) error {
	s.up()
	return nil
}

func (t *httpTransport) subscribe(context.Context) error { return nil }
func (t *httpTransport) polls() bool                     { return true }
func (t *httpTransport) stop(context.Context)            {}

func (t *httpTransport) send(ctx context.Context, m wire.Message) (*downlink, error) {
	return t.do(ctx, http.MethodPost, wire.HTTPPath(m.Kind()), wire.Encode(m))
}

func (t *httpTransport) poll(ctx context.Context) (*downlink, error) {
	return t.do(ctx, http.MethodGet, wire.PathUpgrade, nil)
}

// do makes one call and sorts its answer: 204 is nothing, 200 a downlink,
// 429/503 a *RetryAfterError, any other status an error carrying the
// server's Reply, permanent for client errors that retrying cannot fix.
func (t *httpTransport) do(ctx context.Context, method, path string, body []byte) (*downlink, error) {
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &permanentError{fmt.Errorf("%s %s: %w", method, path, err)}
	}
	req.SetBasicAuth(wire.Username(t.cfg.Product, t.cfg.Device), t.cfg.Secret)
	if body != nil {
		req.Header.Set("Content-Type", wire.ContentType)
	}
	resp, err := t.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxDownlinkSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil, nil
	case http.StatusOK:
		return &downlink{kind: answerKind(b), payload: b}, nil
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return nil, &RetryAfterError{Status: resp.StatusCode, After: retryAfter(resp.Header, time.Now())}
	}
	return nil, statusError(method, path, resp.StatusCode, b)
}

// answerKind tells a Reply (it has "error") from an Upgrade in a 200 body.
func answerKind(b []byte) wire.Kind {
	var probe struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(b, &probe) == nil && probe.Error != nil {
		return wire.KindReply
	}
	return wire.KindUpgrade
}

// statusError turns an error status into an error holding the server's
// *wire.Error when its body is a Reply.
func statusError(method, path string, status int, body []byte) error {
	var err error = &wire.Error{Code: wire.CodeInternal, Message: fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))}
	if r, derr := wire.DecodeReply(body); derr == nil {
		err = &wire.Error{Code: r.Error, Message: r.Message}
	}
	err = fmt.Errorf("%s %s: HTTP %d: %w", method, path, status, err)
	if status >= 400 && status < 500 && status != http.StatusUnauthorized &&
		status != http.StatusForbidden && status != http.StatusRequestTimeout {
		return &permanentError{err}
	}
	return err
}
