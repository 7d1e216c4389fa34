package devicehttp_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/otter-ota/otter/internal/deadline"
)

// sendfileSink stands for a socket that takes the file with sendfile: its
// ReadFrom takes what the *io.LimitedReader allows without reading it, as
// the kernel would, so that the benchmark measures the server's own work.
type sendfileSink struct{}

func (sendfileSink) Write(p []byte) (int, error) { return len(p), nil }

func (sendfileSink) ReadFrom(r io.Reader) (int64, error) {
	lr, ok := r.(*io.LimitedReader)
	if !ok {
		return io.Copy(io.Discard, r)
	}
	n := lr.N
	lr.N = 0
	return n, nil
}

// BenchmarkFastDownload is the download listener's user-space work for a
// plain download of 64 KiB: the request handler (signed URL, slot,
// firmware and device checks, headers, metrics) and fasthttp's writing
// of the answer, whose body a sink takes as sendfile would. Run with
// -benchmem: a download should allocate next to nothing. The system
// calls (read of the request, sendfile) are in `otter bench download`.
func BenchmarkFastDownload(b *testing.B) {
	f := newFixtureOn(b, false)
	fw := f.firmware("demo", "6.4.0", randomBytes(b, 64<<10))
	u, err := url.Parse(f.signer.DownloadURL("demo", "d1", fw.ID))
	if err != nil {
		b.Fatal(err)
	}
	uri := []byte(u.RequestURI())
	handler := f.h.FastDownloads(deadline.Timeouts{})
	// A TCP connection, as the server's: its deadlines cost what theirs do.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	conn, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var ctx fasthttp.RequestCtx
	ctx.Init2(conn, nil, false)
	bw := bufio.NewWriter(sendfileSink{})
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		ctx.Request.Header.SetMethod(http.MethodGet)
		ctx.Request.SetRequestURIBytes(uri)
		handler(&ctx)
		if code := ctx.Response.StatusCode(); code != http.StatusOK {
			b.Fatalf("HTTP %d %s", code, ctx.Response.Body())
		}
		if err := ctx.Response.Write(bw); err != nil {
			b.Fatal(err)
		}
		ctx.Request.Reset()
		ctx.Response.Reset()
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the CPU time of the process so far, user and system: the
// loaded machine makes ns/op (wall-clock) noise.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
