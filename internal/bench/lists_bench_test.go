package bench

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// BenchmarkListPagesAPI serves one page of 100 of every list that `otter
// bench lists` reads (the page in the middle of each list) through the
// API's handler, with its authentication, store reads
// and JSON encoding but no network, and reports the process's CPU time per
// page (cpu-µs/op) besides the wall time and allocations. It seeds 20,000
// rows as `otter bench lists` does (OTTER_BENCH_LISTS_ROWS changes it) on
// SQLite, or on PostgreSQL with OTTER_TEST_POSTGRES_URL.
func BenchmarkListPagesAPI(b *testing.B) {
	ctx := context.Background()
	rows := 20000
	if s := os.Getenv("OTTER_BENCH_LISTS_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			b.Fatalf("OTTER_BENCH_LISTS_ROWS=%q: want a number of 1000 or more", s)
		}
		rows = n
	}
	jc := &JobsConfig{DBURL: os.Getenv(storetest.PostgresEnv), DataDir: b.TempDir()}
	st, closeStore, err := openJobsStore(ctx, jc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := closeStore(); err != nil {
			b.Error(err)
		}
	})
	cfg := ListsConfig{Rows: rows}
	seed, err := seedLists(ctx, st, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := markEvenOnline(ctx, st, seed, nil); err != nil {
		b.Fatal(err)
	}
	blobs, err := blob.NewFS(filepath.Join(b.TempDir(), "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	signer, err := signing.LoadOrCreate(filepath.Join(b.TempDir(), "signing.pem"))
	if err != nil {
		b.Fatal(err)
	}
	a, err := api.New(api.Config{Store: st, Blobs: blobs, Signer: signer})
	if err != nil {
		b.Fatal(err)
	}
	token, err := api.BootstrapAdmin(ctx, st, "")
	if err != nil {
		b.Fatal(err)
	}
	h := a.Handler()
	for _, c := range listCases(seed) {
		u := c.urls("")[5]
		b.Run(c.name, func(b *testing.B) {
			w := &discardWriter{header: http.Header{}}
			serve := func() {
				r, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				if err != nil {
					b.Fatal(err)
				}
				r.Header.Set("Authorization", "Bearer "+token)
				r.Header.Set("Accept", "application/json")
				clear(w.header)
				w.status, w.n = 0, 0
				h.ServeHTTP(w, r)
				if w.status != http.StatusOK && w.status != 0 {
					b.Fatalf("GET %s: status %d", u, w.status)
				}
			}
			serve()
			size := w.n
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				serve()
			}
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(size), "body-bytes")
		})
	}
}

// discardWriter is an http.ResponseWriter that keeps the status and the
// size of the body only.
type discardWriter struct {
	header http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

var _ io.Writer = (*discardWriter)(nil)

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
