package console

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/ota"
)

// handlerTransport serves a client's requests with an http.Handler in the
// same process: the console is a client of the REST API without a network
// hop, so it inherits the API's validation, role checks and events.
type handlerTransport struct{ h http.Handler }

// RoundTrip implements http.RoundTripper. The request body is handed to the
// handler as it is, so a streamed body (a CSV import) stays streamed; the
// answer, small JSON, is buffered.
func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	in := req.Clone(req.Context())
	if in.Body == nil {
		in.Body = http.NoBody
	}
	in.RequestURI = in.URL.RequestURI()
	in.RemoteAddr = "127.0.0.1:0"
	rec := &recorder{header: http.Header{}}
	t.h.ServeHTTP(rec, in)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status: http.StatusText(rec.status), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()),
		Request: req,
	}, nil
}

// recorder is the http.ResponseWriter of an in-process API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

// Header implements http.ResponseWriter.
func (r *recorder) Header() http.Header { return r.header }

// WriteHeader implements http.ResponseWriter; the first status counts.
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// Write implements http.ResponseWriter.
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// statusOf maps an error to the status of the page that reports it.
func statusOf(err error) int {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status >= 400 {
		return ce.Status
	}
	return api.HTTPStatus(ota.ErrorCode(err))
}

// refused reports whether the API refused the operator rather than the
// input: a role that does not allow the change, or a token revoked since
// the page was shown. The answer is then the error page, not a message
// next to a form the operator may not use.
func refused(err error) bool {
	code := codeOf(err)
	return code == ota.EFORBIDDEN || code == ota.EUNAUTHORIZED
}

// codeOf returns the error code of an error: the API problem's, or the
// domain error's.
func codeOf(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Code != "" {
		return ce.Code
	}
	return ota.ErrorCode(err)
}
