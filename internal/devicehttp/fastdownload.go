package devicehttp

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/otter-ota/otter/internal/deadline"
)

// The download listener (`otter serve --download-http`) serves /dl/ with
// fasthttp instead of net/http: for a 64 KiB image net/http's own cost per
// request (about 77 µs of CPU here, against nginx's 35 µs for the whole
// answer) is most of a download's, and fasthttp's is about half of it (see
// BENCHMARKS.md, "Downloads against nginx"). The answers are the same:
// the request goes through serveDownload, and http.ServeContent decides
// the status and headers (ranges, If-Range, conditional requests), into a
// ResponseWriter that fills fasthttp's response. The file itself is handed
// to fasthttp as the body, which sends it with sendfile after the handler
// returns, under the transfer deadlines of package deadline.

// FastDownloads returns the fasthttp handler of the download listener: GET
// and HEAD /dl/{id}, as Routes serves them; any other path answers 404.
// timeouts.Transfer is the minimum rate of a download (zero: the default).
func (h *Handler) FastDownloads(timeouts deadline.Timeouts) fasthttp.RequestHandler {
	policy := timeouts.OrDefault().Transfer
	return func(ctx *fasthttp.RequestCtx) {
		fw := &fastWriter{ctx: ctx, policy: policy, bytes: h.metrics.bytes}
		w := &countingWriter{ResponseWriter: fw, bytes: h.metrics.bytes}
		idText, ok := strings.CutPrefix(string(ctx.Path()), downloadPrefix)
		switch {
		case !ok:
			plainError(w, http.StatusNotFound, "no such download: the path is /dl/{firmware id}")
			return
		case idText == "" || strings.IndexByte(idText, '/') >= 0:
			plainError(w, http.StatusNotFound, "no such download: the path is /dl/{firmware id}")
			return
		case !ctx.IsGet() && !ctx.IsHead():
			fw.Header().Set("Allow", "GET, HEAD")
			plainError(w, http.StatusMethodNotAllowed, "method "+string(ctx.Method())+" is not allowed here; use GET, HEAD")
			return
		}
		h.serveDownload(w, fastRequest(ctx), idText)
		h.metrics.download(w.statusCode())
	}
}

// fastRequest is the part of a fasthttp request that serveDownload and
// http.ServeContent read: the method, the query and the headers of ranges
// and conditional requests.
func fastRequest(ctx *fasthttp.RequestCtx) *http.Request {
	r := &http.Request{
		Method: http.MethodGet,
		URL:    &url.URL{Path: string(ctx.Path()), RawQuery: string(ctx.URI().QueryString())},
		Proto:  "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
	if ctx.IsHead() {
		r.Method = http.MethodHead
	}
	for _, name := range conditionalHeaders {
		if v := ctx.Request.Header.Peek(name); len(v) > 0 {
			if r.Header == nil {
				r.Header = make(http.Header, len(conditionalHeaders))
			}
			r.Header[name] = []string{string(v)}
		}
	}
	// The request keeps the background context: fasthttp's RequestCtx
	// ends only with the server, and copying the request to attach it
	// cost an allocation per download. A download's own reads (a cache
	// miss, the file) are short and bounded.
	return r
}

// dropMultipleRanges removes a Range header of several ranges, so that the
// whole file is sent (RFC 9110 lets a server ignore Range). ServeContent
// would send them as multipart/byteranges from a pipe that it closes when
// it returns, before the download listener sends the body; devices resume
// with one range, which is served.
func dropMultipleRanges(r *http.Request) {
	if strings.Contains(r.Header.Get("Range"), ",") {
		r.Header.Del("Range")
	}
}

// fastWriter is an http.ResponseWriter over a fasthttp response. Short
// answers (errors, redirects) are buffered as fasthttp does; the file
// given to ReadFrom becomes the response's body stream, sent after the
// handler returns.
type fastWriter struct {
	ctx    *fasthttp.RequestCtx
	header http.Header
	status int
	body   *transferBody // the file, once ReadFrom has been called
	policy deadline.Policy
	bytes  prometheus.Counter
}

// Header returns the headers, copied into fasthttp's at WriteHeader.
func (w *fastWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header, 8)
	}
	return w.header
}

// WriteHeader sets the status and copies the headers.
func (w *fastWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	resp := &w.ctx.Response
	resp.SetStatusCode(code)
	for k, vs := range w.header {
		switch k {
		case "Content-Length":
			// fasthttp writes its own from the body; HEAD and 304 have
			// none, and HEAD must still say the size.
			if n, err := strconv.Atoi(vs[0]); err == nil {
				resp.Header.SetContentLength(n)
			}
		case "Content-Type":
			resp.Header.SetContentType(vs[0])
		default:
			for i, v := range vs {
				if i == 0 {
					resp.Header.Set(k, v)
				} else {
					resp.Header.Add(k, v)
				}
			}
		}
	}
}

// Write buffers a short answer.
func (w *fastWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.ctx.IsHead() {
		return len(b), nil
	}
	w.ctx.Response.AppendBody(b)
	return len(b), nil
}

// ReadFrom takes the body of the answer: an *io.LimitedReader over the
// file (the whole file or one range). It only hands it to fasthttp, which
// sends it once the handler returns; the bytes are counted as they go out.
// It answers 0 bytes copied, which http.ServeContent ignores.
func (w *fastWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	lr, ok := src.(*io.LimitedReader)
	if !ok {
		lr = &io.LimitedReader{R: src, N: -1}
	}
	w.body = &transferBody{src: lr.R, left: lr.N, conn: w.ctx.Conn(), policy: w.policy, bytes: w.bytes}
	size := int(lr.N)
	if lr.N < 0 {
		size = -1 // chunked
	}
	w.ctx.Response.SetBodyStream(w.body, size)
	return 0, nil
}

// transferBody sends a download's body: at least policy.MinBytes every
// policy.Window, each chunk under a fresh write deadline, as
// deadline.Writer does for net/http. The chunks of a file go out with
// sendfile: fasthttp's writer hands an *io.LimitedReader over an *os.File
// to the connection's ReadFrom.
type transferBody struct {
	src    io.Reader
	left   int64 // bytes still to send; -1: until EOF
	conn   net.Conn
	policy deadline.Policy
	bytes  prometheus.Counter
	// done runs when fasthttp closes the body (sent or not): it closes
	// the file and releases the download slot.
	done []func()
}

// SupportsBodyWriteTo tells fasthttp to call WriteTo.
func (b *transferBody) SupportsBodyWriteTo() bool { return true }

// WriteTo sends the body to w, fasthttp's writer of the response.
func (b *transferBody) WriteTo(w io.Writer) (int64, error) {
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		rf = readerFrom{w}
	}
	if mc, ok := b.conn.(*moreConn); ok {
		// fasthttp writes the headers, still buffered, just before the
		// first chunk.
		mc.more = true
		defer func() { mc.more = false }()
	}
	var total int64
	for b.left != 0 {
		size := b.policy.MinBytes
		if b.left > 0 {
			size = min(size, b.left)
		}
		_ = b.conn.SetWriteDeadline(time.Now().Add(b.policy.Window))
		n, err := rf.ReadFrom(&io.LimitedReader{R: b.src, N: size})
		total += n
		if n > 0 {
			b.bytes.Add(float64(n))
		}
		if b.left > 0 {
			b.left -= n
		}
		if err != nil {
			return total, err
		}
		if n < size {
			if b.left > 0 {
				return total, io.ErrUnexpectedEOF
			}
			break
		}
	}
	return total, nil
}

// Read lets fasthttp read the body itself, should it not call WriteTo.
func (b *transferBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.src.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if n > 0 {
		b.bytes.Add(float64(n))
	}
	return n, err
}

// Close ends the body: it closes the file and releases the download slot.
func (b *transferBody) Close() error {
	for _, f := range b.done {
		f()
	}
	b.done = nil
	return nil
}

// readerFrom copies with io.Copy for a writer without ReadFrom.
type readerFrom struct{ io.Writer }

func (r readerFrom) ReadFrom(src io.Reader) (int64, error) { return io.Copy(r.Writer, src) }
