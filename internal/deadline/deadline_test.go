package deadline_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/deadline"
)

// short are timeouts a test can outlast in a second or two.
var short = deadline.Timeouts{
	Header: time.Second, Body: 300 * time.Millisecond, Write: 300 * time.Millisecond, Idle: time.Second,
	Transfer: deadline.Policy{Window: 300 * time.Millisecond, MinBytes: 1024},
}

// cutWithin is how soon after its timeout a stalled client must be cut:
// generous for a loaded machine, far below "held forever".
const cutWithin = 3 * time.Second

type rig struct {
	t    *testing.T
	addr string
	// done receives what each handler saw: nil, or its read or write error.
	done chan error
	file string // a large file served by GET /file
	size int64
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, done: make(chan error, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", r.echo)
	mux.HandleFunc("POST /early", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "refused before the body", http.StatusUnauthorized)
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, req *http.Request) {
		r.echo(deadline.Transfer(w, req), req)
	})
	mux.HandleFunc("POST /work", r.work)
	mux.HandleFunc("POST /busy-upload", r.busyUpload)
	mux.HandleFunc("GET /file", r.serveFile)
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = short.Server(mux)
	srv.Listener = smallSendBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	r.addr = srv.Listener.Addr().String()
	return r
}

// smallSendBuffers gives each connection a send buffer of 32 KiB: on
// loopback, TCP would otherwise queue megabytes, which a slow real link
// never lets it do, and a steady reader would unblock the server's writes
// only in bursts.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		err = errors.Join(err, tc.SetWriteBuffer(32<<10))
	}
	return c, err
}

func (r *rig) echo(w http.ResponseWriter, req *http.Request) {
	n, err := io.Copy(io.Discard, req.Body)
	r.done <- err
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprint(w, n)
}

// work reads the body, then works for three times the body timeout: the
// request's context must stay alive.
func (r *rig) work(w http.ResponseWriter, req *http.Request) {
	_, err := io.Copy(io.Discard, req.Body)
	if err == nil {
		select {
		case <-req.Context().Done():
			err = fmt.Errorf("the context ended while the handler worked: %w", context(req))
		case <-time.After(3 * short.Body):
		}
	}
	r.done <- err
	fmt.Fprint(w, "done")
}

func context(req *http.Request) error { return req.Context().Err() }

// busyUpload reads the first bytes of a transfer, stops reading for three
// transfer windows as a handler busy elsewhere would (a slow disk), then
// reads the rest.
func (r *rig) busyUpload(w http.ResponseWriter, req *http.Request) {
	w = deadline.Transfer(w, req)
	first := make([]byte, 8<<10)
	_, err := io.ReadFull(req.Body, first)
	if err == nil {
		time.Sleep(3 * short.Transfer.Window) // the handler's own work, not synchronisation
		_, err = io.Copy(io.Discard, req.Body)
	}
	r.done <- err
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprint(w, "done")
}

func (r *rig) serveFile(w http.ResponseWriter, req *http.Request) {
	f, err := os.Open(r.file)
	if err != nil {
		r.done <- err
		return
	}
	defer f.Close()
	cw := &errWriter{ResponseWriter: deadline.Transfer(w, req)}
	http.ServeContent(cw, req, "", time.Time{}, f)
	r.done <- cw.err
}

// errWriter remembers the first write error of ServeContent, which
// swallows it.
type errWriter struct {
	http.ResponseWriter
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	n, err := e.ResponseWriter.Write(b)
	e.keep(err)
	return n, err
}

func (e *errWriter) ReadFrom(src io.Reader) (int64, error) {
	n, err := e.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
	e.keep(err)
	return n, err
}

func (e *errWriter) keep(err error) {
	if e.err == nil {
		e.err = err
	}
}

// withFile gives the rig a random file of size bytes.
func (r *rig) withFile(size int64) {
	r.file = filepath.Join(r.t.TempDir(), "firmware.bin")
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(r.file, b, 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.size = size
}

// handlerResult waits for the handler's outcome.
func (r *rig) handlerResult() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(10 * time.Second):
		r.t.Fatal("the handler never finished")
		return nil
	}
}

// post sends headers announcing size bytes, then the body in pieces of
// piece bytes every gap, and returns the answer's status (0 when the
// server cut the connection first) and how long the exchange took.
func (r *rig) post(path string, size, piece int, gap time.Duration) (int, time.Duration) {
	r.t.Helper()
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", path, size)
	go func() {
		chunk := bytes.Repeat([]byte("x"), piece)
		for sent := 0; sent < size; sent += piece {
			if _, err := conn.Write(chunk[:min(piece, size-sent)]); err != nil {
				return
			}
			time.Sleep(gap) // the client's pace, not synchronisation
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, time.Since(start)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// A client that trickles a body is cut within the body timeout, whether
// the handler reads the body or refuses the request before reading it.
func TestTrickledBodyIsCut(t *testing.T) {
	r := newRig(t)
	status, took := r.post("/echo", 100, 1, 50*time.Millisecond)
	if err := r.handlerResult(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the handler read the trickle without a timeout: %v", err)
	}
	if took > short.Body+cutWithin || status == http.StatusOK {
		t.Errorf("trickled body to a reading handler: HTTP %d after %v, want a cut within %v", status, took, short.Body)
	}
	start := time.Now()
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
	go func() {
		for range 99 {
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(conn) // the 401, then the server closes
	if took := time.Since(start); err != nil || took > short.Body+cutWithin {
		t.Errorf("trickled body to a handler that refused it: connection held %v (%v), want a cut within %v", took, err, short.Body)
	}
}

// A request whose body arrived keeps its context however long the handler
// works: net/http's own ReadTimeout would cancel it.
func TestHandlerWorksPastTheBodyTimeout(t *testing.T) {
	r := newRig(t)
	status, _ := r.post("/work", 10, 10, 0)
	if err := r.handlerResult(); err != nil || status != http.StatusOK {
		t.Fatalf("HTTP %d, handler: %v", status, err)
	}
}

// An upload under the transfer policy may last far longer than the body
// and write timeouts while it keeps the minimum rate; a trickle is cut.
func TestTransferUpload(t *testing.T) {
	r := newRig(t)
	const size = 40 << 10 // 2 KiB every 100 ms: 2 s, about 7 windows
	status, took := r.post("/upload", size, 2<<10, 100*time.Millisecond)
	if err := r.handlerResult(); err != nil || status != http.StatusOK {
		t.Fatalf("slow but steady upload: HTTP %d after %v, handler: %v", status, took, err)
	}
	if took < 3*short.Body {
		t.Fatalf("the upload took %v: too fast to prove anything", took)
	}
	status, took = r.post("/upload", size, 1, 20*time.Millisecond)
	if err := r.handlerResult(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the handler read a trickled upload without a timeout: %v", err)
	}
	if status == http.StatusOK || took > short.Transfer.Window+cutWithin {
		t.Errorf("trickled upload: HTTP %d after %v, want a cut within %v", status, took, short.Transfer.Window)
	}
}

// Only the time the handler waits for the body counts against the client:
// a client that sent its upload at once is not cut because the handler
// stopped reading for longer than the transfer window.
func TestTransferUploadOutlastsABusyHandler(t *testing.T) {
	r := newRig(t)
	const size = 32 << 10 // fits in the socket buffers: sent at once
	status, _ := r.post("/busy-upload", size, size, 0)
	if err := r.handlerResult(); err != nil || status != http.StatusOK {
		t.Fatalf("an upload sent at once, read by a busy handler: HTTP %d, handler: %v", status, err)
	}
}

// A download read at a steady pace lasts longer than the write timeout and
// arrives whole; a client that stops reading is cut.
func TestTransferDownload(t *testing.T) {
	r := newRig(t)
	r.withFile(4 << 20)
	conn := r.get(32 << 10)
	defer conn.Close()
	start := time.Now()
	got, err := readPaced(conn, 16<<10, 10*time.Millisecond)
	if err != nil || got != r.size {
		t.Fatalf("paced download: %d of %d bytes after %v: %v (handler: %v)", got, r.size, time.Since(start), err, r.handlerResult())
	}
	if err := r.handlerResult(); err != nil {
		t.Fatalf("paced download: handler: %v", err)
	}
	if took := time.Since(start); took < 3*short.Write {
		t.Fatalf("the download took %v: too fast to prove anything", took)
	}

	r.withFile(16 << 20) // far more than the socket buffers
	stalled := r.get(0)
	defer stalled.Close()
	start = time.Now()
	if err := r.handlerResult(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a client that reads nothing: handler ended with %v, want a write timeout", err)
	}
	if took := time.Since(start); took > short.Transfer.Window+cutWithin {
		t.Errorf("a client that reads nothing held the download for %v", took)
	}
}

// get sends GET /file from a connection with a receive buffer of rcvbuf
// bytes (0: the system's), small for the same reason as smallSendBuffers.
func (r *rig) get(rcvbuf int) net.Conn {
	r.t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		if rcvbuf == 0 {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
	return conn
}

// readPaced reads an HTTP answer's body, piece bytes every gap.
func readPaced(conn net.Conn, piece int, gap time.Duration) (int64, error) {
	br := bufio.NewReaderSize(conn, piece)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, errors.New(resp.Status)
	}
	want, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	var got int64
	for got < want {
		n, err := io.CopyN(io.Discard, resp.Body, int64(piece))
		got += n
		if err != nil {
			return got, err
		}
		time.Sleep(gap) // the client's pace, not synchronisation
	}
	return got, nil
}
