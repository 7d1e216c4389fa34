package devicehttp

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
