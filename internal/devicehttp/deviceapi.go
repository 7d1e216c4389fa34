package devicehttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/sdk/wire"
)

// The device API answers as sdk/wire/http.go and docs/protocol.md say, and
// as the SDK's HTTP mode reads it:
//   - 204 when the engine has nothing to say (inform, confirm, progress, a
//     poll with no pending upgrade);
//   - 200 with an upgrade message (an offer, a command, a cancel), or with
//     a reply whose error is no_upgrade (a request that found nothing);
//   - a reply message with an error status otherwise: 400 malformed, 401
//     unauthorized, 404 unknown_job or unknown_topic, 405
//     method_not_allowed (with Allow), 413 too_large, 429 or 503
//     unavailable (with Retry-After), 500 internal. A reply about a body
//     that names a job names it too.

// endpoint is one call of the device API.
type endpoint struct {
	kind   wire.Kind
	method string
	// run decodes the body and hands the message to the engine.
	run func(ctx context.Context, d engine.Device, body []byte) (*engine.Answer, error)
}

func (h *Handler) endpoints() []endpoint {
	e := h.cfg.Devices
	return []endpoint{
		{wire.KindInform, http.MethodPost, decoded(wire.DecodeInform, e.Inform)},
		{wire.KindRequest, http.MethodPost, decoded(wire.DecodeRequest, e.Request)},
		{wire.KindConfirm, http.MethodPost, decoded(wire.DecodeConfirm, e.Confirm)},
		{wire.KindProgress, http.MethodPost, decoded(wire.DecodeProgress, e.Progress)},
		{wire.KindUpgrade, http.MethodGet, func(ctx context.Context, d engine.Device, _ []byte) (*engine.Answer, error) {
			return e.Poll(ctx, d)
		}},
	}
}

// decoded joins a strict wire decoder to the engine method that takes its
// message. Decoder errors are *wire.Error values (malformed, too_large).
func decoded[M any](decode func([]byte) (M, error), call func(context.Context, engine.Device, M) (*engine.Answer, error)) func(context.Context, engine.Device, []byte) (*engine.Answer, error) {
	return func(ctx context.Context, d engine.Device, body []byte) (*engine.Answer, error) {
		m, err := decode(body)
		if err != nil {
			return nil, err
		}
		return call(ctx, d, m)
	}
}

// response is an answer of the device API.
type response struct {
	status     int
	body       wire.Message // nil: no body
	retryAfter int          // seconds; 0: no Retry-After
}

// deviceCall serves one endpoint and records its metrics.
func (h *Handler) deviceCall(e endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var resp response
		if r.Method != e.method { // HEAD comes in through GET patterns
			resp = methodNotAllowed(w, e, r.Method)
		} else {
			resp = h.call(w, r, e)
		}
		h.write(w, resp)
		h.metrics.requests.WithLabelValues(string(e.kind), strconv.Itoa(resp.status)).Inc()
		h.metrics.duration.WithLabelValues(string(e.kind)).Observe(time.Since(start).Seconds())
	})
}

// call runs one device API request inside a concurrency slot: log the
// device in, read its message, hand it to the engine.
func (h *Handler) call(w http.ResponseWriter, r *http.Request, e endpoint) response {
	if !acquire(h.slots) {
		return busy(e.kind, http.StatusTooManyRequests, "the server is handling too many device requests")
	}
	defer release(h.slots)
	h.metrics.inFlight.Inc()
	defer h.metrics.inFlight.Dec()
	dev, err := h.login(r)
	if err != nil {
		return h.fail(r, e.kind, err)
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return h.fail(r, e.kind, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.CallTimeout)
	defer cancel()
	a, err := e.run(ctx, dev, body)
	if err != nil {
		return withJob(h.fail(r, e.kind, err), body)
	}
	return answer(a)
}

// login checks the request's HTTP Basic credentials.
func (h *Handler) login(r *http.Request) (engine.Device, error) {
	user, secret, ok := r.BasicAuth()
	if !ok {
		return engine.Device{}, &wire.Error{Code: wire.CodeUnauthorized,
			Message: "missing credentials: send HTTP Basic auth with user {product}/{device} and the device secret"}
	}
	product, device, err := wire.ParseUsername(user)
	if err != nil {
		return engine.Device{}, err
	}
	return h.creds.authenticate(r.Context(), product, device, secret)
}

// errSlowBody is a body that did not arrive in time; the device sends the
// message again, so it is answered as "busy".
var errSlowBody = errors.New("the request body did not arrive in time")

// readBody reads a POST body of at most wire.MaxMessageSize bytes within
// the body timeout.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Method != http.MethodPost {
		return nil, nil
	}
	if r.ContentLength > wire.MaxMessageSize {
		return nil, tooLarge(r.ContentLength)
	}
	// Not every ResponseWriter can set deadlines (HTTP/2 over some
	// proxies); the server's own timeouts then apply.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout))
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxMessageSize))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, tooLarge(-1)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, errSlowBody
	case err != nil:
		return nil, &wire.Error{Code: wire.CodeMalformed, Message: "the request body could not be read: " + err.Error()}
	}
	return b, nil
}

func tooLarge(n int64) error {
	msg := fmt.Sprintf("the message exceeds %d bytes", wire.MaxMessageSize)
	if n > 0 {
		msg = fmt.Sprintf("the message is %d bytes; the limit is %d", n, wire.MaxMessageSize)
	}
	return &wire.Error{Code: wire.CodeTooLarge, Message: msg}
}

// fail turns an error into an answer. A *wire.Error names the device's
// mistake (malformed, too large, unauthorized) and is answered as such.
// Anything else means the message was not stored (the engine or the store
// failed) or may not be yet (the call timed out in the engine's queue):
// 503, and the device sends it again, which the engine takes idempotently.
func (h *Handler) fail(r *http.Request, kind wire.Kind, err error) response {
	var we *wire.Error
	if errors.As(err, &we) && we.Code != wire.CodeInternal && we.Code != wire.CodeUnavailable {
		return response{status: statusOf(we.Code), body: wire.Reply{To: kind, Error: we.Code, Message: we.Message}}
	}
	if r.Context().Err() == nil && !errors.Is(err, errSlowBody) {
		h.logErrors.Do(func() {
			h.log.Warn("devicehttp: device message not stored; the device will send it again", "kind", kind, "err", err)
		})
	}
	return busy(kind, http.StatusServiceUnavailable, "the server could not take the message now: send it again after Retry-After seconds")
}

// withJob names in an error reply the job the refused body named.
func withJob(resp response, body []byte) response {
	if reply, ok := resp.body.(wire.Reply); ok && reply.Job == "" {
		reply.Job = wire.JobNamed(body)
		resp.body = reply
	}
	return resp
}

// busy is a 429 or 503 answer with Retry-After.
func busy(kind wire.Kind, status int, msg string) response {
	return response{status: status, retryAfter: retryAfterSeconds, body: wire.Reply{
		To: kind, Error: wire.CodeUnavailable, Message: msg, RetryAfter: retryAfterSeconds,
	}}
}

// answer turns the engine's answer into a response: nothing is 204, an
// upgrade or a no_upgrade reply is 200, any other reply is its error's
// status.
func answer(a *engine.Answer) response {
	if a == nil || a.Message == nil {
		return response{status: http.StatusNoContent}
	}
	reply, isReply := a.Message.(wire.Reply)
	if !isReply || reply.Error == wire.CodeNoUpgrade {
		return response{status: http.StatusOK, body: a.Message}
	}
	resp := response{status: statusOf(reply.Error), body: reply}
	if resp.status == http.StatusServiceUnavailable {
		resp.retryAfter = max(reply.RetryAfter, 1)
	}
	return resp
}

// statusOf maps a reply's error code to its HTTP status.
func statusOf(code string) int {
	switch code {
	case wire.CodeNoUpgrade:
		return http.StatusOK
	case wire.CodeMalformed:
		return http.StatusBadRequest
	case wire.CodeUnauthorized:
		return http.StatusUnauthorized
	case wire.CodeUnknownJob, wire.CodeUnknownTopic:
		return http.StatusNotFound
	case wire.CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case wire.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case wire.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// write sends a response. Answers are never cached: each depends on the
// moment.
func (h *Handler) write(w http.ResponseWriter, resp response) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	if resp.status == http.StatusUnauthorized {
		hd.Set("WWW-Authenticate", `Basic realm="otter"`)
	}
	if resp.retryAfter > 0 {
		hd.Set("Retry-After", strconv.Itoa(resp.retryAfter))
	}
	if resp.body == nil {
		w.WriteHeader(resp.status)
		return
	}
	hd.Set("Content-Type", wire.ContentType)
	w.WriteHeader(resp.status)
	_, _ = w.Write(wire.Encode(resp.body))
}

func methodNotAllowed(w http.ResponseWriter, e endpoint, method string) response {
	w.Header().Set("Allow", e.method)
	return response{status: http.StatusMethodNotAllowed, body: wire.Reply{To: e.kind, Error: wire.CodeMethodNotAllowed,
		Message: fmt.Sprintf("%s %s: method %s is not allowed; use %s", e.method, wire.HTTPPath(e.kind), wire.Clip(method, maxQuoted), e.method)}}
}

// wrongMethod answers a known path called with the wrong method.
func (h *Handler) wrongMethod(e endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := methodNotAllowed(w, e, r.Method)
		h.write(w, resp)
		h.metrics.requests.WithLabelValues(string(e.kind), strconv.Itoa(resp.status)).Inc()
	})
}

// unknownPath answers any other path under /device/v1/.
func (h *Handler) unknownPath() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := response{status: http.StatusNotFound, body: wire.Reply{To: wire.ReplyTo(r.URL.Path), Error: wire.CodeUnknownTopic,
			Message: fmt.Sprintf("no such device API path %q; the paths are %s{inform,request,confirm,progress,upgrade}", wire.Clip(r.URL.Path, maxQuoted), wire.HTTPPrefix)}}
		h.write(w, resp)
		h.metrics.requests.WithLabelValues("unknown", strconv.Itoa(resp.status)).Inc()
	})
}

// maxQuoted bounds device input quoted in an answer.
const maxQuoted = 64
