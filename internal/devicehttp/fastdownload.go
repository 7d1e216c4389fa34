package devicehttp

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/deadline"
)

// The download listener (`otter serve --download-http`) serves /dl/ with
// fasthttp instead of net/http: for a 64 KiB image net/http's own cost per
// request (about 77 µs of CPU here, against nginx's 35 µs for the whole
// answer) is most of a download's, and fasthttp's is about half of it (see
// BENCHMARKS.md, "Downloads against nginx"). The answers are the same.
// A plain GET or HEAD of a whole file from the folder store (nearly every
// download) is served by fastDownload: the checks of serveDownload, the
// headers set straight into fasthttp's, the file sent with sendfile from
// a descriptor the store keeps open. Anything else (ranges, conditional
// requests, an S3 store) goes through serveDownload, and
// http.ServeContent decides the status and headers into a ResponseWriter
// that fills fasthttp's response. Either way the file is handed to
// fasthttp as the body, which sends it after the handler returns, under
// the transfer deadlines of package deadline.

// FastDownloads returns the fasthttp handler of the download listener: GET
// and HEAD /dl/{id}, as Routes serves them; any other path answers 404.
// timeouts.Transfer is the minimum rate of a download (zero: the default).
func (h *Handler) FastDownloads(timeouts deadline.Timeouts) fasthttp.RequestHandler {
	policy := timeouts.OrDefault().Transfer
	return func(ctx *fasthttp.RequestCtx) {
		idText, ok := bytes.CutPrefix(ctx.Path(), downloadPrefixBytes)
		switch {
		case !ok || len(idText) == 0 || bytes.IndexByte(idText, '/') >= 0:
			w := h.fastWriter(ctx, policy)
			plainError(w, http.StatusNotFound, "no such download: the path is /dl/{firmware id}")
			return
		case !ctx.IsGet() && !ctx.IsHead():
			w := h.fastWriter(ctx, policy)
			w.Header().Set("Allow", "GET, HEAD")
			plainError(w, http.StatusMethodNotAllowed, "method "+string(ctx.Method())+" is not allowed here; use GET, HEAD")
			return
		case h.shared != nil && !h.cfg.Redirect && plainFastGet(ctx):
			h.serveShared(ctx, idText, policy)
			return
		}
		w := h.fastWriter(ctx, policy)
		h.serveDownload(w, fastRequest(ctx), string(idText))
		h.metrics.download(w.statusCode())
	}
}

var downloadPrefixBytes = []byte(downloadPrefix)

// fastWriter returns a writer of the answer to ctx for serveDownload.
func (h *Handler) fastWriter(ctx *fasthttp.RequestCtx, policy deadline.Policy) *countingWriter {
	fw := &fastWriter{ctx: ctx, policy: policy, bytes: h.metrics.bytes}
	return &countingWriter{ResponseWriter: fw, bytes: h.metrics.bytes}
}

// plainFastGet reports whether ctx asks for a whole file with no
// condition, as plainGet does for net/http.
func plainFastGet(ctx *fasthttp.RequestCtx) bool {
	for _, name := range conditionalHeaders {
		if len(ctx.Request.Header.Peek(name)) > 0 {
			return false
		}
	}
	return true
}

// sharedOpener is a blob store that keeps files open between downloads
// (blob.FS).
type sharedOpener interface {
	OpenShared(ctx context.Context, key string) (*blob.SharedFile, error)
}

// fastDownload is one plain download on the download listener: a GET or
// HEAD of a whole file from a store that keeps its files open, nearly
// every download. It is served as serveDownload would serve it (the same
// checks in the same order, the same answers) without building an
// http.Request or a header map, from a descriptor the blob store keeps
// open and sent with sendfile at an offset of its own. Its state is
// reused from download to download: the download listener then
// allocates almost nothing per download.
type fastDownload struct {
	h    *Handler
	ctx  *fasthttp.RequestCtx
	fw   fastWriter     // error answers
	cw   countingWriter // over fw
	body transferBody
	rng  fileRange
	// What the download holds until its body is sent.
	file    *blob.SharedFile
	slot    bool
	started time.Time
	buf     [64]byte // Cache-Control
}

// serveShared serves a plain download (plainFastGet) on the download
// listener.
func (h *Handler) serveShared(ctx *fasthttp.RequestCtx, idText []byte, policy deadline.Policy) {
	d, _ := h.fastPool.Get().(*fastDownload)
	if d == nil {
		d = &fastDownload{h: h}
	}
	d.ctx = ctx
	d.fw = fastWriter{ctx: ctx, policy: policy, bytes: h.metrics.bytes}
	d.cw = countingWriter{ResponseWriter: &d.fw, bytes: h.metrics.bytes}
	sending := d.serve(idText, policy)
	h.metrics.download(d.cw.statusCode())
	if !sending {
		d.finish()
	}
}

// serve answers the download; it reports whether a body was handed to
// fasthttp, which then ends the download when it closes the body.
func (d *fastDownload) serve(idText []byte, policy deadline.Policy) bool {
	h, ctx, w := d.h, d.ctx, &d.cw
	id, err := strconv.ParseInt(string(idText), 10, 64)
	if err != nil || id <= 0 {
		plainError(w, http.StatusNotFound, "no such firmware: the path is /dl/{firmware id}")
		return false
	}
	g, err := h.cfg.Signer.Verify(id, string(ctx.URI().QueryString()))
	if err != nil {
		tokenRefused(w, err)
		return false
	}
	if !h.takeSlot(w) {
		return false
	}
	d.slot, d.started = true, h.cfg.Now()
	h.dlPace.start(d.started)
	// As for fastRequest, the background context: fasthttp's RequestCtx
	// ends only with the server.
	bg := context.Background()
	e, ok := h.grantedFirmware(bg, w, g)
	if !ok {
		return false
	}
	fw := e.fw
	f, err := h.shared.OpenShared(bg, fw.BlobKey)
	if err != nil {
		h.openFailed(bg, w, fw, err)
		return false
	}
	d.file = f
	if f.Size() != fw.Size {
		h.wrongSize(w, fw, f.Size())
		return false
	}
	d.cw.status = http.StatusOK
	hd := &ctx.Response.Header
	hd.SetContentTypeBytes(octetStreamBytes)
	hd.SetCanonical(headerContentDisposition, s2b(e.disposition))
	hd.SetCanonical(headerETag, s2b(e.etag))
	hd.SetCanonical(headerCacheControl, strconv.AppendInt(append(d.buf[:0], "private, max-age="...), h.maxAge(g), 10))
	if e.modified != "" {
		hd.SetCanonical(headerLastModified, s2b(e.modified))
	}
	hd.SetCanonical(headerAcceptRanges, acceptBytesBytes)
	if ctx.IsHead() || fw.Size == 0 {
		hd.SetContentLength(int(fw.Size))
		return false
	}
	d.rng = fileRange{f: f}
	d.body = transferBody{src: &d.rng, left: fw.Size, conn: ctx.Conn(), policy: policy, bytes: h.metrics.bytes, fast: d}
	if mc, ok := ctx.Conn().(*moreConn); ok {
		// The headers go out on their own, ahead of the body, flagged
		// MSG_MORE: the kernel holds them until the file's first
		// segment, and the file is sent with sendfile from the empty
		// buffer (moreConn.ReadFrom).
		ctx.Response.ImmediateHeaderFlush = true
		mc.more = true
	}
	ctx.Response.SetBodyStream(&d.body, int(fw.Size))
	return true
}

// finish releases what the download held and makes d ready for reuse.
func (d *fastDownload) finish() {
	h := d.h
	if d.file != nil {
		d.file.Release()
	}
	if d.slot {
		h.downloadDone(d.started)
	}
	*d = fastDownload{h: h}
	h.fastPool.Put(d)
}

// Header names and values of a served file, for fasthttp's SetCanonical.
var (
	headerContentDisposition = []byte("Content-Disposition")
	headerETag               = []byte("ETag")
	headerCacheControl       = []byte("Cache-Control")
	headerLastModified       = []byte("Last-Modified")
	headerAcceptRanges       = []byte("Accept-Ranges")
	octetStreamBytes         = []byte("application/octet-stream")
	acceptBytesBytes         = []byte("bytes")
)

// s2b is the bytes of s, for fasthttp setters that copy what they are
// given.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// fileRange is what is left to send of a shared file: sent with sendfile
// at its own offset by moreConn.ReadFrom, or read with pread (Read) by any
// other writer (TLS, a buffered copy). It has no SyscallConn on purpose:
// net would then send from the descriptor's position, which every
// download of the file shares.
type fileRange struct {
	f   *blob.SharedFile
	off int64 // the next byte to send
}

// Read reads at the range's offset.
func (r *fileRange) Read(p []byte) (int, error) {
	n, err := r.f.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
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
	// the file and releases the download slot; fast does it for a plain
	// download.
	done []func()
	fast *fastDownload
	lr   io.LimitedReader // the chunk being sent
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
		b.lr = io.LimitedReader{R: b.src, N: size}
		n, err := rf.ReadFrom(&b.lr)
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
	if mc, ok := b.conn.(*moreConn); ok {
		mc.more = false // the headers may not have been written
	}
	for _, f := range b.done {
		f()
	}
	b.done = nil
	if d := b.fast; d != nil {
		b.fast = nil
		d.finish()
	}
	return nil
}

// readerFrom copies with io.Copy for a writer without ReadFrom.
type readerFrom struct{ io.Writer }

func (r readerFrom) ReadFrom(src io.Reader) (int64, error) { return io.Copy(r.Writer, src) }
