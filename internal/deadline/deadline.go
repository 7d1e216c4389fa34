// Package deadline bounds how long an HTTP client may hold a connection
// without moving data, so that clients that send their headers and then
// trickle a body, or read an answer a byte at a time, cannot exhaust the
// server's file descriptors.
//
// net/http's own ReadTimeout and WriteTimeout count from the start of a
// request: they would cut a large firmware upload or download, and, once
// the body is read, net/http cancels the context of a handler that runs
// past ReadTimeout. So Timeouts.Handler sets deadlines per request
// instead: a request body must arrive within Timeouts.Body (then the read
// deadline is lifted, however long the handler works), and every write of
// an answer must be taken by the client within Timeouts.Write. Routes that
// move files call Transfer: the file may take as long as it needs as long
// as it keeps the minimum rate of Timeouts.Transfer.
package deadline

import (
	"io"
	"net/http"
	"time"
)

// Policy is the slowest transfer accepted: at least MinBytes every Window.
type Policy struct {
	Window   time.Duration
	MinBytes int64
}

// Timeouts are the deadlines of one HTTP listener.
type Timeouts struct {
	// Header bounds reading a request's headers (http.Server's
	// ReadHeaderTimeout).
	Header time.Duration
	// Body bounds reading an ordinary request body, from the end of its
	// headers.
	Body time.Duration
	// Write bounds each write of an answer: a client that takes nothing
	// for this long is cut.
	Write time.Duration
	// Idle bounds the wait for the next request of a kept-alive
	// connection (http.Server's IdleTimeout).
	Idle time.Duration
	// Transfer is the minimum rate of the requests that call Transfer.
	Transfer Policy
}

// Default suits an API, a console and device messages on one listener.
// The transfer rate, 64 KiB in any minute (about 1 KiB/s), is slow enough
// for a device on a poor cellular link and fast enough to cut a trickle.
var Default = Timeouts{
	Header: 10 * time.Second, Body: 30 * time.Second, Write: time.Minute, Idle: 2 * time.Minute,
	Transfer: Policy{Window: time.Minute, MinBytes: 64 << 10},
}

// OrDefault returns t with each zero field taken from Default.
func (t Timeouts) OrDefault() Timeouts {
	d := Default
	pick := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&t.Header, d.Header)
	pick(&t.Body, d.Body)
	pick(&t.Write, d.Write)
	pick(&t.Idle, d.Idle)
	if t.Transfer.Window <= 0 || t.Transfer.MinBytes <= 0 {
		t.Transfer = d.Transfer
	}
	return t
}

// Server returns an http.Server serving h under t.
func (t Timeouts) Server(h http.Handler) *http.Server {
	t = t.OrDefault()
	return &http.Server{Handler: t.Handler(h), ReadHeaderTimeout: t.Header, IdleTimeout: t.Idle}
}

// Handler serves h with t's body and write deadlines. The http.Server
// must have no ReadTimeout or WriteTimeout of its own.
func (t Timeouts) Handler(h http.Handler) http.Handler {
	t = t.OrDefault()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		dw := &Writer{ResponseWriter: w, rc: rc, window: t.Write, chunk: t.Transfer.MinBytes, policy: t.Transfer}
		// A kept-alive connection carries the last request's deadline.
		dw.extend()
		if r.Body != nil && r.Body != http.NoBody {
			_ = rc.SetReadDeadline(time.Now().Add(t.Body))
			r.Body = &body{ReadCloser: r.Body, rc: rc}
		}
		h.ServeHTTP(dw, r)
	})
}

// Transfer puts a request that moves a file under the transfer policy:
// reading its body and writing its answer each get a fresh deadline for
// every MinBytes moved, in place of the fixed body and write deadlines.
// The write deadline is lifted while the body is read, so that the
// handler may work on a large body before it answers. Outside
// Timeouts.Handler (a handler under test) it applies Default.Transfer.
// Handlers write to the returned writer (or to w, which leads to it).
func Transfer(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	dw := find(w)
	if dw == nil {
		d := Default.Transfer
		dw = &Writer{ResponseWriter: w, rc: http.NewResponseController(w), chunk: d.MinBytes, policy: d}
	}
	p := dw.policy
	dw.window = p.Window
	_ = dw.rc.SetWriteDeadline(time.Time{}) // writers without deadlines ignore this
	if r.Body == nil || r.Body == http.NoBody {
		return dw
	}
	b, ok := r.Body.(*body)
	if !ok {
		b = &body{ReadCloser: r.Body, rc: dw.rc}
		r.Body = b
	}
	b.progress = p
	_ = dw.rc.SetReadDeadline(time.Now().Add(p.Window))
	return dw
}

// find returns the Writer that w is or wraps.
func find(w http.ResponseWriter) *Writer {
	for {
		switch x := w.(type) {
		case *Writer:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
}

// body lifts the read deadline once the body has arrived (net/http then
// reads ahead in the background, and a deadline there would cancel the
// handler's context); under a transfer policy it extends the deadline as
// bytes arrive.
//
// Under a transfer policy only the time spent waiting in Read counts
// against the client: a handler that stops reading for a while (a slow
// disk under a large upload, a loaded machine) would otherwise find the
// deadline passed on its next Read and cut a client that kept the pace.
type body struct {
	io.ReadCloser
	rc       *http.ResponseController
	progress Policy        // zero: the fixed deadline set by Handler
	moved    int64         // since the last extension
	waited   time.Duration // in Read since the last extension
}

func (b *body) Read(p []byte) (int, error) {
	if b.progress.MinBytes <= 0 {
		n, err := b.ReadCloser.Read(p)
		if err == io.EOF {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
		return n, err
	}
	start := time.Now()
	_ = b.rc.SetReadDeadline(start.Add(b.progress.Window - b.waited))
	n, err := b.ReadCloser.Read(p)
	b.waited += time.Since(start)
	if b.moved += int64(n); b.moved >= b.progress.MinBytes {
		b.moved, b.waited = 0, 0
	}
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// Writer is the ResponseWriter of Handler: each chunk of an answer is
// written under a fresh deadline. It implements io.ReaderFrom so that a
// file still goes out with sendfile: a chunk of an *io.LimitedReader over
// an *os.File is an *io.LimitedReader over the same file.
type Writer struct {
	http.ResponseWriter
	rc     *http.ResponseController
	window time.Duration // the deadline of each chunk
	chunk  int64
	policy Policy // applied by Transfer
}

// WriteHeader extends the deadline for the headers.
func (w *Writer) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

// Write writes b in chunks, each under a fresh deadline.
func (w *Writer) Write(b []byte) (int, error) {
	var done int
	for len(b) > 0 {
		w.extend()
		n, err := w.ResponseWriter.Write(b[:min(int64(len(b)), w.chunk)])
		done += n
		if err != nil {
			return done, err
		}
		b = b[n:]
	}
	return done, nil
}

// ReadFrom copies src in chunks, each under a fresh deadline, through the
// underlying writer's ReadFrom.
func (w *Writer) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{w}, src)
	}
	inner, left := src, int64(-1) // -1: until EOF
	if lr, ok := src.(*io.LimitedReader); ok {
		inner, left = lr.R, lr.N
		defer func() { lr.N = max(left, 0) }()
	}
	var total int64
	for left != 0 {
		size := w.chunk
		if left > 0 {
			size = min(size, left)
		}
		w.extend()
		n, err := rf.ReadFrom(&io.LimitedReader{R: inner, N: size})
		total += n
		if left > 0 {
			left -= n
		}
		if err != nil || n < size {
			return total, err
		}
	}
	return total, nil
}

func (w *Writer) extend() {
	if w.window > 0 {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.window))
	}
}

// Flush sends what is buffered.
func (w *Writer) Flush() {
	w.extend()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writerOnly hides ReadFrom, so that io.Copy cannot loop back into it.
type writerOnly struct{ io.Writer }
