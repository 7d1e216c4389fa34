package devicehttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/ota"
)

// redirectTTL bounds the life of the store URL a download is redirected
// to: a device follows the redirect at once, and a resume comes back
// through otter's own URL for a fresh one. S3 checks the signature when a
// GET starts, so a transfer longer than this still completes.
const redirectTTL = 5 * time.Minute

// download serves GET and HEAD /dl/{id}: a firmware file, to the holder of
// a valid signed URL, with Range, If-Range and ETag support. Errors are
// short plain-text answers: devices only read the status.
//
//	307 with Config.Redirect: the file is at the Location, a presigned URL
//	    of the blob store
//	401 the token is missing or garbled
//	403 the signature does not match, the URL expired, or the device it was
//	    made for no longer exists
//	404 the firmware was deleted
//	416 the Range cannot be satisfied (beyond the end, or "-0")
//	503 too many downloads at once, or the store failed (Retry-After)
func (h *Handler) download(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{ResponseWriter: w, bytes: h.metrics.bytes}
	h.serveDownload(cw, r, r.PathValue("id"))
	h.metrics.download(cw.statusCode())
}

// serveDownload answers a download of firmware idText (the path element).
// What must last as long as the answer's body (the download slot, the
// open file) is released through w.afterBody: when the handler returns
// under net/http, once the body is sent on the download listener.
func (h *Handler) serveDownload(w *countingWriter, r *http.Request, idText string) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		plainError(w, http.StatusNotFound, "no such firmware: the path is /dl/{firmware id}")
		return
	}
	g, err := h.cfg.Signer.Verify(id, r.URL.RawQuery)
	if err != nil {
		tokenRefused(w, err)
		return
	}
	if !h.takeSlot(w) {
		return
	}
	started := h.cfg.Now()
	h.dlPace.start(started)
	defer w.afterBody(func() { h.downloadDone(started) })
	e, ok := h.grantedFirmware(r.Context(), w, g)
	switch {
	case ok && h.cfg.Redirect && !h.staleIfRange(r, e.fw):
		h.redirect(w, r, g, e.fw)
	case ok:
		h.serveFile(w, r, g, e)
	}
}

// tokenRefused answers a download whose URL's token Verify refused.
func tokenRefused(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNoToken) {
		plainError(w, http.StatusUnauthorized, err.Error())
		return
	}
	plainError(w, http.StatusForbidden, err.Error())
}

// takeSlot takes a download slot, or answers 503 with a Retry-After.
func (h *Handler) takeSlot(w http.ResponseWriter) bool {
	if !acquire(h.dlSlots) {
		w.Header().Set("Retry-After", strconv.Itoa(h.dlPace.retryAfter(h.cfg.Now())))
		plainError(w, http.StatusServiceUnavailable, "too many downloads at once: try again after Retry-After seconds")
		return false
	}
	h.metrics.dlInFlight.Inc()
	return true
}

// downloadDone ends a download that held a slot.
func (h *Handler) downloadDone(started time.Time) {
	h.dlPace.done(h.cfg.Now().Sub(started))
	h.metrics.dlInFlight.Dec()
	release(h.dlSlots)
}

// redirect sends the device to a presigned URL of the blob store for the
// same method (a HEAD URL for HEAD: S3 signs the method). Range and
// If-Range go with the redirected request and the store answers them
// itself, with its own ETag, against which the device resumes.
// staleIfRange reports whether a resume names an ETag that is neither
// otter's nor the store's. S3 stores (AWS's among them) ignore If-Range
// and would send the rest of a file the device does not hold the start
// of; otter then answers itself, with the whole file. It costs a HEAD to
// the store only for resumes that do not carry otter's own ETag.
func (h *Handler) staleIfRange(r *http.Request, fw ota.Firmware) bool {
	ir := r.Header.Get("If-Range")
	if ir == "" || r.Header.Get("Range") == "" || ir == etag(fw) {
		return false
	}
	obj, err := h.cfg.Blobs.Open(r.Context(), fw.BlobKey)
	if err != nil {
		return true // serveFile answers the error
	}
	obj.Close()
	return ir != obj.ETag
}

func etag(fw ota.Firmware) string { return `"sha256-` + fw.SHA256 + `"` }

func (h *Handler) redirect(w *countingWriter, r *http.Request, g Grant, fw ota.Firmware) {
	ttl := max(min(redirectTTL, g.Expires.Sub(h.cfg.Now())), time.Second)
	u, err := h.cfg.Blobs.(blob.Presigner).Presign(r.Context(), r.Method, fw.BlobKey, fileName(fw), ttl)
	if err != nil {
		h.unavailable(w, "presign the store URL", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
}

// grantedFirmware loads the firmware of a valid grant and checks that the
// grant still holds; it answers the request itself when not.
//
// The device named in the URL must still exist, which the credential cache
// answers cheaply. Its secret is not checked: the URL is the credential,
// so a device whose secret was rotated keeps a working URL until it
// expires (at most the URL TTL), as anyone it gave the URL to does.
func (h *Handler) grantedFirmware(ctx context.Context, w http.ResponseWriter, g Grant) (*firmwareEntry, bool) {
	e, err := h.firmware(ctx, g.FirmwareID)
	if ota.ErrorCode(err) == ota.ENOTFOUND {
		plainError(w, http.StatusNotFound, fmt.Sprintf("firmware %d no longer exists", g.FirmwareID))
		return e, false
	}
	if err != nil {
		h.unavailable(w, "read firmware", err)
		return e, false
	}
	if e.fw.Product != g.Product {
		plainError(w, http.StatusForbidden, "the download URL is not valid for this firmware")
		return e, false
	}
	exists, err := h.creds.exists(ctx, g.Product, g.Device)
	if err != nil {
		h.unavailable(w, "read device credentials", err)
		return e, false
	}
	if !exists {
		plainError(w, http.StatusForbidden, "the device this download URL was made for no longer exists")
		return e, false
	}
	return e, true
}

// firmware reads a firmware for a download. Served files come from the
// firmware cache; a redirect reads the store, as the blob store is not
// asked whether the file is still there.
func (h *Handler) firmware(ctx context.Context, id int64) (*firmwareEntry, error) {
	if h.cfg.Redirect {
		fw, err := h.cfg.Store.GetFirmware(ctx, id)
		return &firmwareEntry{fw: fw}, err
	}
	return h.firmwares.get(ctx, id)
}

// openFailed answers a download whose file could not be opened. The API
// deletes the row, then the file: a file that is missing because its
// firmware was just deleted is answered as the deleted firmware is.
func (h *Handler) openFailed(ctx context.Context, w http.ResponseWriter, fw ota.Firmware, err error) {
	switch {
	case ota.ErrorCode(err) == ota.ENOTFOUND && h.deletedSince(ctx, fw.ID):
		plainError(w, http.StatusNotFound, fmt.Sprintf("firmware %d no longer exists", fw.ID))
	case ota.ErrorCode(err) == ota.ENOTFOUND:
		h.log.Error("devicehttp: firmware file missing from the blob store", "firmware", fw.ID, "key", fw.BlobKey)
		plainError(w, http.StatusNotFound, fmt.Sprintf("the file of firmware %d is missing", fw.ID))
	default:
		h.unavailable(w, "open firmware file", err)
	}
}

// wrongSize answers a download whose file does not have the firmware's
// size.
func (h *Handler) wrongSize(w http.ResponseWriter, fw ota.Firmware, size int64) {
	h.log.Error("devicehttp: firmware file has the wrong size", "firmware", fw.ID, "size", size, "want", fw.Size)
	plainError(w, http.StatusInternalServerError, "the firmware file is damaged on the server")
}

// maxAge is the Cache-Control max-age of a file served under g: the
// seconds until the URL expires.
func (h *Handler) maxAge(g Grant) int64 {
	return max(int64(g.Expires.Sub(h.cfg.Now())/time.Second), 0)
}

// serveFile streams the firmware's file with http.ServeContent.
func (h *Handler) serveFile(w *countingWriter, r *http.Request, g Grant, e *firmwareEntry) {
	fw := e.fw
	obj, err := h.cfg.Blobs.Open(r.Context(), fw.BlobKey)
	if err != nil {
		h.openFailed(r.Context(), w, fw, err)
		return
	}
	defer w.afterBody(func() { obj.Close() })
	if obj.Size != fw.Size {
		h.wrongSize(w, fw, obj.Size)
		return
	}
	hd := w.Header()
	hd["Content-Type"] = octetStream
	hd["Content-Disposition"] = []string{e.disposition}
	hd["Etag"] = []string{e.etag}
	hd["Cache-Control"] = []string{"private, max-age=" + strconv.FormatInt(h.maxAge(g), 10)}
	// A large image over a slow link takes longer than any fixed write
	// timeout: the transfer may last as long as it keeps a minimum rate.
	// The download listener's writer keeps that rate itself.
	if _, ok := w.ResponseWriter.(*fastWriter); !ok {
		w.ResponseWriter = deadline.Transfer(w.ResponseWriter, r)
	}
	w.counting = true
	if plainGet(r) {
		serveWhole(w, r, e.modified, obj)
		return
	}
	dropEmptySuffixRanges(r, obj.Size)
	if _, ok := w.ResponseWriter.(*fastWriter); ok {
		dropMultipleRanges(r)
	}
	http.ServeContent(w, r, "", fw.CreatedAt, obj.Content)
}

// octetStream is the Content-Type of a firmware file, shared by every
// answer (net/http only reads it).
var octetStream = []string{"application/octet-stream"}

// plainGet reports whether r asks for the whole file with no condition:
// nearly every download. http.ServeContent would answer it as serveWhole
// does, after two seeks to learn the size that the blob store gave.
func plainGet(r *http.Request) bool {
	for _, name := range conditionalHeaders {
		if len(r.Header[name]) > 0 {
			return false
		}
	}
	return true
}

// conditionalHeaders are the request headers that make http.ServeContent
// answer other than the whole file with 200, in canonical spelling.
var conditionalHeaders = []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"}

// serveWhole answers 200 with the whole file and the headers that
// http.ServeContent would add for it; modified is the Last-Modified, ""
// for none.
func serveWhole(w *countingWriter, r *http.Request, modified string, obj *blob.Object) {
	hd := w.Header()
	if modified != "" {
		hd["Last-Modified"] = []string{modified}
	}
	hd["Accept-Ranges"] = acceptBytes
	hd.Set("Content-Length", strconv.FormatInt(obj.Size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.ReadFrom(&io.LimitedReader{R: obj.Content, N: obj.Size})
	}
}

// acceptBytes is the Accept-Ranges of a file.
var acceptBytes = []string{"bytes"}

// deletedSince reports whether a firmware whose file is missing was
// deleted since the cache read it: the API deletes the row, then the file.
func (h *Handler) deletedSince(ctx context.Context, id int64) bool {
	_, err := h.firmwares.load(ctx, id)
	return ota.ErrorCode(err) == ota.ENOTFOUND
}

// dropEmptySuffixRanges removes the ranges "-0" (the last zero bytes) from
// the Range header: RFC 9110 calls them unsatisfiable, but ServeContent
// answers 206 with the invalid Content-Range "bytes size-(size-1)/size".
// When no range is left, the header asks for one past the end, which
// ServeContent answers 416 with "bytes */size" (and still ignores when
// If-Range does not match, as it must).
func dropEmptySuffixRanges(r *http.Request, size int64) {
	spec, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !ok {
		return
	}
	var kept []string
	for _, ra := range strings.Split(spec, ",") {
		if !emptySuffix(ra) {
			kept = append(kept, ra)
		}
	}
	if len(kept) == 0 {
		kept = []string{strconv.FormatInt(size, 10) + "-"}
	}
	r.Header.Set("Range", "bytes="+strings.Join(kept, ","))
}

func (h *Handler) unavailable(w http.ResponseWriter, what string, err error) {
	h.logErrors.Do(func() { h.log.Warn("devicehttp: download failed", "step", what, "err", err) })
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	plainError(w, http.StatusServiceUnavailable, "the server cannot serve the file now: try again after Retry-After seconds")
}

// emptySuffix reports whether ra is a suffix range of zero bytes, read as
// net/http reads it: white space around either side, and any spelling that
// strconv.ParseInt takes for 0 ("0", "000", "+0").
func emptySuffix(ra string) bool {
	start, end, ok := strings.Cut(ra, "-")
	start, end = textproto.TrimString(start), textproto.TrimString(end)
	if !ok || start != "" || end == "" || end[0] == '-' {
		return false
	}
	n, err := strconv.ParseInt(end, 10, 64)
	return err == nil && n == 0
}

// fileName is "{product}-{module}-{version}.bin" with anything unusual in
// the version (quotes, slashes, non-ASCII) replaced by '_'.
func fileName(fw ota.Firmware) string {
	safe := func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".+-_", r) {
			return r
		}
		return '_'
	}
	return strings.Map(safe, fw.Product+"-"+fw.Module+"-"+fw.Version) + ".bin"
}

// countingWriter counts the firmware bytes sent and remembers the status.
// It implements io.ReaderFrom by delegating, so that the server still sends
// an *os.File with sendfile: a plain wrapper would hide the underlying
// ReadFrom and make every byte pass through user space.
type countingWriter struct {
	http.ResponseWriter
	bytes    prometheus.Counter
	status   int
	counting bool // set once the file is being served
}

// WriteHeader records the status.
func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

// Write counts what is written.
func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.count(int64(n))
	return n, err
}

// ReadFrom hands src to the underlying writer's ReadFrom (sendfile).
func (c *countingWriter) ReadFrom(src io.Reader) (int64, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{c.ResponseWriter}, src)
	}
	c.count(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) count(n int64) {
	if c.counting && n > 0 {
		c.bytes.Add(float64(n))
	}
}

// afterBody runs f once the answer's body is sent: now when the handler
// sends it itself (net/http), or when the download listener has streamed
// the body the handler handed it.
func (c *countingWriter) afterBody(f func()) {
	if fw, ok := c.ResponseWriter.(*fastWriter); ok && fw.body != nil {
		fw.body.done = append(fw.body.done, f)
		return
	}
	f()
}

func (c *countingWriter) statusCode() int {
	if c.status == 0 {
		return http.StatusOK
	}
	return c.status
}

// writerOnly hides every method but Write, so io.Copy cannot loop back
// into ReadFrom.
type writerOnly struct{ io.Writer }
