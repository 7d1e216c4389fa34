package devicehttp

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/deadline"
)

// deadlineConn records the write deadlines set on it.
type deadlineConn struct {
	net.Conn
	deadlines []time.Time
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	return nil
}

// fileWriter is a writer with ReadFrom, like fasthttp's: it records what
// ReadFrom is handed.
type fileWriter struct {
	bytes.Buffer
	srcs []io.Reader
}

func (w *fileWriter) ReadFrom(src io.Reader) (int64, error) {
	w.srcs = append(w.srcs, src)
	return io.Copy(&w.Buffer, src)
}

// The download listener's body goes out in chunks of the policy's
// MinBytes, each under a fresh write deadline, and each handed to the
// writer's ReadFrom as an *io.LimitedReader over the *os.File: what
// fasthttp and net send with sendfile.
func TestTransferBodyKeepsSendfileAndDeadlines(t *testing.T) {
	policy := deadline.Policy{Window: time.Minute, MinBytes: 4 << 10}
	content := make([]byte, 3*policy.MinBytes+5)
	_, _ = rand.Read(content)
	path := filepath.Join(t.TempDir(), "fw")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	conn := &deadlineConn{}
	sent := prometheus.NewCounter(prometheus.CounterOpts{Name: "sent"})
	closed := false
	b := &transferBody{src: file, left: int64(len(content)), conn: conn, policy: policy, bytes: sent, done: []func(){func() { closed = true }}}
	var w fileWriter
	start := time.Now()
	n, err := b.WriteTo(&w)
	if err != nil || n != int64(len(content)) || !bytes.Equal(w.Bytes(), content) {
		t.Fatalf("WriteTo: %d bytes, %v; content equal %t", n, err, bytes.Equal(w.Bytes(), content))
	}
	if len(w.srcs) != 4 || len(conn.deadlines) != 4 {
		t.Fatalf("%d chunks under %d deadlines, want 4 and 4", len(w.srcs), len(conn.deadlines))
	}
	for i, src := range w.srcs {
		lr, ok := src.(*io.LimitedReader)
		if !ok {
			t.Fatalf("chunk %d: ReadFrom got %T, want *io.LimitedReader", i, src)
		}
		if _, ok := lr.R.(*os.File); !ok {
			t.Fatalf("chunk %d: a LimitedReader over %T, want *os.File", i, lr.R)
		}
		if d := conn.deadlines[i]; d.Before(start.Add(policy.Window)) {
			t.Fatalf("chunk %d: deadline %v, want at least a window from the start", i, d)
		}
	}
	if got := testutil.ToFloat64(sent); got != float64(len(content)) {
		t.Fatalf("counted %v bytes, want %d", got, len(content))
	}
	if err := b.Close(); err != nil || !closed {
		t.Fatalf("Close: %v, done ran %t", err, closed)
	}
}

// A range of a file the blob store keeps open goes out through the
// download listener's connection from the range's own offset, with the
// descriptor's position untouched (other downloads share it).
func TestMoreConnSendsFileRanges(t *testing.T) {
	ctx := context.Background()
	store, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	content := make([]byte, 1<<20)
	_, _ = rand.Read(content)
	w, err := store.Create(ctx, "firmware/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	file, err := store.OpenShared(ctx, "firmware/x")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Release()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := FastListener(ln)
	defer fl.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := fl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	mc, ok := server.(*moreConn)
	if !ok {
		t.Fatalf("FastListener accepted a %T", server)
	}
	received := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		received <- b
	}()
	r1 := &fileRange{f: file, off: 1000}
	lr := &io.LimitedReader{R: r1, N: 600_000}
	if n, err := mc.ReadFrom(lr); n != 600_000 || err != nil || lr.N != 0 || r1.off != 601_000 {
		t.Fatalf("first range: %d bytes, %v; %d left, offset %d", n, err, lr.N, r1.off)
	}
	// The rest of the file from an offset past the first range's end: it
	// stops at the end of the file.
	r2 := &fileRange{f: file, off: 900_000}
	if n, err := mc.ReadFrom(&io.LimitedReader{R: r2, N: 1 << 30}); n != int64(len(content))-900_000 || err != nil {
		t.Fatalf("second range: %d bytes, %v", n, err)
	}
	if pos, err := syscall.Seek(file.Fd(), 0, io.SeekCurrent); pos != 0 || err != nil {
		t.Fatalf("the descriptor's position moved to %d (%v)", pos, err)
	}
	server.Close()
	got := <-received
	want := append(append([]byte(nil), content[1000:601_000]...), content[900_000:]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("received %d bytes, want %d", len(got), len(want))
	}
}
