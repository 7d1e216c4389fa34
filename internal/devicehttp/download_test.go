package devicehttp_test

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/devicehttp"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

func TestDownloadRefusals(t *testing.T) { eachListener(t, testDownloadRefusals) }

func testDownloadRefusals(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	good := f.signer.DownloadURL("demo", "d1", f.fw.ID)
	query := good[strings.IndexByte(good, '?'):]
	// A firmware deleted after its URL was made.
	gone := f.firmware("demo", "1.2.0", []byte("soon gone"))
	goneURL := f.signer.DownloadURL("demo", "d1", gone.ID)
	if err := f.st.DeleteFirmware(f.ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	// Another product's firmware, with a URL naming a demo device.
	if err := f.st.CreateProduct(f.ctx, &ota.Product{Key: "other"}); err != nil {
		t.Fatal(err)
	}
	foreign := f.firmware("other", "9.0.0", []byte("not for demo"))
	// A device deleted after its URL was made.
	if _, err := f.st.CreateDevices(f.ctx, []store.NewDevice{{Product: "demo", Key: "d9", SecretHash: credential.Hash("x")}}); err != nil {
		t.Fatal(err)
	}
	deletedURL := f.signer.DownloadURL("demo", "d9", f.fw.ID)
	if err := f.st.DeleteDevice(f.ctx, "demo", "d9"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		method string
		url    string
		want   int
	}{
		{"no token", http.MethodGet, f.dl + "/dl/" + strconv.FormatInt(f.fw.ID, 10), http.StatusUnauthorized},
		{"garbled token", http.MethodGet, f.dl + "/dl/" + strconv.FormatInt(f.fw.ID, 10) + "?d=demo/d1&e=x&s=y", http.StatusUnauthorized},
		{"other firmware id", http.MethodGet, f.dl + "/dl/" + strconv.FormatInt(f.fw.ID+100, 10) + query, http.StatusForbidden},
		{"tampered device", http.MethodGet, strings.Replace(good, "d=demo/d1", "d=demo/d2", 1), http.StatusForbidden},
		{"foreign firmware", http.MethodGet, f.signer.DownloadURL("demo", "d1", foreign.ID), http.StatusForbidden},
		{"deleted device", http.MethodGet, deletedURL, http.StatusForbidden},
		{"deleted firmware", http.MethodGet, goneURL, http.StatusNotFound},
		{"id not a number", http.MethodGet, f.dl + "/dl/abc" + query, http.StatusNotFound},
		{"nested path", http.MethodGet, f.dl + "/dl/1/2" + query, http.StatusNotFound},
		{"POST", http.MethodPost, good, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.get(tt.method, tt.url)
			if r.status != tt.want {
				t.Fatalf("HTTP %d %s, want %d", r.status, r.body, tt.want)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || len(r.body) == 0 {
				t.Fatalf("refusal has Content-Type %q and body %q; want a short text", ct, r.body)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("refusal has Cache-Control %q", cc)
			}
		})
	}
	f.waitCounter(2, "otter_download_requests_total", "status", "401")
	f.waitCounter(4, "otter_download_requests_total", "status", "403")
}

// An expired URL is refused even though everything else holds.
func TestDownloadExpiredURL(t *testing.T) { eachListener(t, testDownloadExpiredURL) }

func testDownloadExpiredURL(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	u := f.signer.DownloadURL("demo", "d1", f.fw.ID)
	f.clock.Add(2 * time.Hour) // the fixture's TTL is one hour
	if r := f.get(http.MethodGet, u); r.status != http.StatusForbidden || !strings.Contains(string(r.body), "expired") {
		t.Fatalf("HTTP %d %s, want 403 expired", r.status, r.body)
	}
}

func TestDownloadWholeFile(t *testing.T) { eachListener(t, testDownloadWholeFile) }

func testDownloadWholeFile(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	r := f.get(http.MethodGet, f.signer.DownloadURL("demo", "d1", f.fw.ID))
	if r.status != http.StatusOK {
		t.Fatalf("HTTP %d %s", r.status, r.body)
	}
	equalBytes(t, "body", r.body, f.file)
	want := map[string]string{
		"Content-Type":        "application/octet-stream",
		"Content-Disposition": `attachment; filename="demo-default-1.1.0.bin"`,
		"ETag":                `"sha256-` + f.fw.SHA256 + `"`,
		"Accept-Ranges":       "bytes",
		"Content-Length":      strconv.Itoa(len(f.file)),
		"Last-Modified":       f.fw.CreatedAt.UTC().Format(http.TimeFormat),
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	cc := r.header.Get("Cache-Control")
	age, err := strconv.Atoi(strings.TrimPrefix(cc, "private, max-age="))
	if err != nil || age < 3600-5 || age > 3600+600 {
		t.Errorf("Cache-Control %q, want private with the URL's remaining life", cc)
	}
	f.waitCounter(float64(len(f.file)), "otter_download_bytes_total")
	f.waitCounter(1, "otter_download_requests_total", "status", "200")
}

// A download cut in the middle resumes with Range and If-Range, and the
// two parts make the exact file.
func TestDownloadResumes(t *testing.T) { eachListener(t, testDownloadResumes) }

func testDownloadResumes(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	u := f.signer.DownloadURL("demo", "d1", f.fw.ID)
	half := len(f.file) / 2
	first := f.open(u)
	etag := first.Header.Get("ETag")
	rest := f.get(http.MethodGet, u, "Range", "bytes="+strconv.Itoa(half)+"-", "If-Range", etag)
	if rest.status != http.StatusPartialContent {
		t.Fatalf("resume: HTTP %d, want 206", rest.status)
	}
	wantRange := "bytes " + strconv.Itoa(half) + "-" + strconv.Itoa(len(f.file)-1) + "/" + strconv.Itoa(len(f.file))
	if cr := rest.header.Get("Content-Range"); cr != wantRange {
		t.Fatalf("Content-Range %q, want %q", cr, wantRange)
	}
	got, err := io.ReadAll(io.LimitReader(first.Body, int64(half)))
	first.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "resumed file", append(got, rest.body...), f.file)
	// A stale ETag means the file changed: the whole file comes again.
	again := f.get(http.MethodGet, u, "Range", "bytes="+strconv.Itoa(half)+"-", "If-Range", `"sha256-0000"`)
	if again.status != http.StatusOK {
		t.Fatalf("stale If-Range: HTTP %d, want 200", again.status)
	}
	equalBytes(t, "stale If-Range body", again.body, f.file)
	f.waitCounter(1, "otter_download_requests_total", "status", "206")
}

// Ranges of zero bytes cannot be satisfied (RFC 9110): "-0" alone answers
// 416 with "bytes */size", and beside a valid range it is ignored.
func TestDownloadRanges(t *testing.T) { eachListener(t, testDownloadRanges) }

func testDownloadRanges(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	u := f.signer.DownloadURL("demo", "d1", f.fw.ID)
	size := strconv.Itoa(len(f.file))
	last := strconv.Itoa(len(f.file) - 1)
	cases := []struct {
		rng, contentRange string
		status            int
		body              []byte
	}{
		{"bytes=-0", "bytes */" + size, http.StatusRequestedRangeNotSatisfiable, nil},
		{"bytes=-000", "bytes */" + size, http.StatusRequestedRangeNotSatisfiable, nil},
		{"bytes=-0, -0", "bytes */" + size, http.StatusRequestedRangeNotSatisfiable, nil},
		{"bytes= - +0", "bytes */" + size, http.StatusRequestedRangeNotSatisfiable, nil},
		{"bytes=" + size + "-", "bytes */" + size, http.StatusRequestedRangeNotSatisfiable, nil},
		{"bytes=-0,0-1", "bytes 0-1/" + size, http.StatusPartialContent, f.file[:2]},
		{"bytes=-1", "bytes " + last + "-" + last + "/" + size, http.StatusPartialContent, f.file[len(f.file)-1:]},
		{"bytes=-10", "bytes " + strconv.Itoa(len(f.file)-10) + "-" + last + "/" + size, http.StatusPartialContent, f.file[len(f.file)-10:]},
		{"bytes=0-", "bytes 0-" + last + "/" + size, http.StatusPartialContent, f.file},
	}
	for _, c := range cases {
		r := f.get(http.MethodGet, u, "Range", c.rng)
		if r.status != c.status || r.header.Get("Content-Range") != c.contentRange {
			t.Errorf("Range %q: HTTP %d Content-Range %q, want %d %q", c.rng, r.status, r.header.Get("Content-Range"), c.status, c.contentRange)
			continue
		}
		if c.body != nil {
			equalBytes(t, "body of "+c.rng, r.body, c.body)
		}
	}
	// A stale If-Range still means the whole file, even for "-0".
	r := f.get(http.MethodGet, u, "Range", "bytes=-0", "If-Range", `"sha256-0000"`)
	if r.status != http.StatusOK {
		t.Fatalf(`"-0" with a stale If-Range: HTTP %d, want 200`, r.status)
	}
}

// open starts a download and returns the response, of which the caller
// reads a part before closing it: a link that breaks.
func (f *fixture) open(u string) *http.Response {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, u, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" {
		f.t.Fatalf("first try: HTTP %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	return resp
}

func TestDownloadHead(t *testing.T) { eachListener(t, testDownloadHead) }

func testDownloadHead(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	r := f.get(http.MethodHead, f.signer.DownloadURL("demo", "d1", f.fw.ID))
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("HEAD: HTTP %d with %d body bytes", r.status, len(r.body))
	}
	if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(f.file)) {
		t.Fatalf("HEAD Content-Length %q, want %d", cl, len(f.file))
	}
	if r.header.Get("ETag") == "" {
		t.Fatal("HEAD has no ETag")
	}
	if n := f.counter("otter_download_bytes_total"); n != 0 {
		t.Fatalf("HEAD counted %v bytes", n)
	}
}

func TestDownloadLimit(t *testing.T) { eachListener(t, testDownloadLimit) }

// On the download listener the file goes out after the handler returns:
// the slot is held until it is sent.
func testDownloadLimit(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast, func(c *devicehttp.Config) { c.MaxDownloads = 1 })
	// Far larger than the loopback socket buffers: while the client reads
	// nothing, the handler stays in ServeContent and holds the one slot.
	big := f.firmware("demo", "2.0.0", make([]byte, 64<<20))
	u := f.signer.DownloadURL("demo", "d1", big.ID)
	held := f.open(u)
	defer held.Body.Close()
	eventually(t, func() bool { return f.counter("otter_downloads_in_flight") == 1 }, "the first download to be served")
	r := f.get(http.MethodGet, u)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("second download: HTTP %d Retry-After %q, want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
}

// recorder is a ResponseWriter with ReadFrom, like the server's: it
// records what ReadFrom is handed.
type recorder struct {
	*httptest.ResponseRecorder
	src io.Reader
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.src = src
	return io.Copy(r.ResponseRecorder, src)
}

// The byte-counting wrapper must hand the file to the server's ReadFrom,
// where net/http uses sendfile for an *os.File under an io.LimitedReader.
func TestDownloadKeepsSendfile(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{ResponseRecorder: httptest.NewRecorder()}
	req := httptest.NewRequest(http.MethodGet, f.signer.DownloadURL("demo", "d1", f.fw.ID), nil)
	f.h.Routes().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d", rec.Code)
	}
	lr, ok := rec.src.(*io.LimitedReader)
	if !ok {
		t.Fatalf("ReadFrom got %T, want *io.LimitedReader", rec.src)
	}
	if _, ok := lr.R.(*os.File); !ok {
		t.Fatalf("ReadFrom got a LimitedReader over %T, want *os.File", lr.R)
	}
	equalBytes(t, "body", rec.Body.Bytes(), f.file)
	if n := f.counter("otter_download_bytes_total"); n != float64(len(f.file)) {
		t.Errorf("bytes counted %v, want %d", n, len(f.file))
	}
}

// Redirecting downloads needs a store that makes presigned URLs; the
// filesystem store makes none, so the handler refuses to be built.
func TestRedirectNeedsAPresigningStore(t *testing.T) {
	f := newFixture(t)
	_, err := devicehttp.New(devicehttp.Config{Store: f.st, Blobs: f.blobs, Devices: f.e, Signer: f.signer, Redirect: true})
	if err == nil || !strings.Contains(err.Error(), "presigned") {
		t.Fatalf("New with Redirect over the filesystem store: %v, want a refusal", err)
	}
}

// A firmware that was served is refused once deleted, as the API deletes
// it (the row, then the file): the download does not trust what it
// remembers of the firmware when the file is gone. A firmware that tasks
// used stays as a tombstone row, and is refused too.
func TestDownloadDeletedAfterServed(t *testing.T) { eachListener(t, testDownloadDeletedAfterServed) }

func testDownloadDeletedAfterServed(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	for _, used := range []bool{false, true} {
		fw := f.firmware("demo", "1.3.0-"+strconv.FormatBool(used), []byte("served, then deleted"))
		if used {
			task := f.createTask(ota.TaskSpec{FirmwareID: fw.ID, Mode: ota.ModeRequest, Target: ota.Target{Devices: []string{"d2"}}})
			if _, err := f.e.Cancel(f.ctx, task.ID); err != nil {
				t.Fatal(err)
			}
		}
		u := f.signer.DownloadURL("demo", "d1", fw.ID)
		if r := f.get(http.MethodGet, u); r.status != http.StatusOK || string(r.body) != "served, then deleted" {
			t.Fatalf("used %t: before the deletion: HTTP %d %q", used, r.status, r.body)
		}
		if err := f.st.DeleteFirmware(f.ctx, fw.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.blobs.Delete(f.ctx, fw.BlobKey); err != nil {
			t.Fatal(err)
		}
		r := f.get(http.MethodGet, u)
		if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "no longer exists") {
			t.Fatalf("used %t: after the deletion: HTTP %d %q, want 404 no longer exists", used, r.status, r.body)
		}
		if used {
			if got, err := f.st.GetFirmware(f.ctx, fw.ID); err != nil || got.Status != ota.FirmwareDeleted {
				t.Fatalf("want a tombstone row; got %+v, %v", got, err)
			}
		}
	}
}

// Several ranges come as multipart/byteranges from the net/http listener;
// the download listener ignores them and sends the whole file, as RFC 9110
// allows (devices resume with one range). A matching If-None-Match is
// answered 304 on either.
func TestDownloadMultipleRangesAndNotModified(t *testing.T) {
	eachListener(t, testDownloadMultipleRangesAndNotModified)
}

func testDownloadMultipleRangesAndNotModified(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	u := f.signer.DownloadURL("demo", "d1", f.fw.ID)
	r := f.get(http.MethodGet, u, "Range", "bytes=0-1,4-6")
	if fast {
		if r.status != http.StatusOK {
			t.Fatalf("two ranges on the download listener: HTTP %d, want 200 with the whole file", r.status)
		}
		equalBytes(t, "body", r.body, f.file)
	} else {
		mediaType, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
		if r.status != http.StatusPartialContent || err != nil || mediaType != "multipart/byteranges" {
			t.Fatalf("two ranges: HTTP %d Content-Type %q", r.status, r.header.Get("Content-Type"))
		}
		mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
		for _, want := range [][]byte{f.file[0:2], f.file[4:7]} {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(p)
			if err != nil {
				t.Fatal(err)
			}
			equalBytes(t, "part "+p.Header.Get("Content-Range"), got, want)
		}
	}
	nm := f.get(http.MethodGet, u, "If-None-Match", r.header.Get("ETag"))
	if nm.status != http.StatusNotModified || len(nm.body) != 0 {
		t.Fatalf("If-None-Match with the ETag: HTTP %d with %d body bytes, want 304", nm.status, len(nm.body))
	}
	f.waitCounter(1, "otter_download_requests_total", "status", "304")
}

// Many downloads of one 3 MiB file at once, so that their sockets fill
// and each send stops and resumes: on the download listener the file is
// sent from one descriptor the blob store keeps open, each download at
// its own offsets, and every device gets the exact file, whole or from a
// range.
func TestDownloadsAtOnce(t *testing.T) { eachListener(t, testDownloadsAtOnce) }

func testDownloadsAtOnce(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	file := randomBytes(t, 3<<20+17)
	fw := f.firmware("demo", "3.0.0", file)
	u := f.signer.DownloadURL("demo", "d1", fw.ID)
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			errs <- func() error {
				req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, u, nil)
				if err != nil {
					return err
				}
				from := 0
				if i%4 == 3 {
					from = 1<<20 + i
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				var got bytes.Buffer
				buf := make([]byte, 256<<10)
				for {
					n, err := resp.Body.Read(buf)
					got.Write(buf[:n])
					if err == io.EOF {
						break
					}
					if err != nil {
						return err
					}
				}
				if !bytes.Equal(got.Bytes(), file[from:]) {
					return fmt.Errorf("download %d (HTTP %d): %d bytes, the same as the file's %d from byte %d for %d bytes",
						i, resp.StatusCode, got.Len(), len(file)-from, from, commonPrefix(got.Bytes(), file[from:]))
				}
				return nil
			}()
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A file removed behind the blob store's back, as another replica on a
// shared folder deletes it (the row, then the file), stops being served
// within moments though its descriptor was kept open.
func TestDownloadRemovedElsewhere(t *testing.T) { eachListener(t, testDownloadRemovedElsewhere) }

func testDownloadRemovedElsewhere(t *testing.T, fast bool) {
	f := newFixtureOn(t, fast)
	fw := f.firmware("demo", "3.1.0", []byte("removed elsewhere"))
	u := f.signer.DownloadURL("demo", "d1", fw.ID)
	if r := f.get(http.MethodGet, u); r.status != http.StatusOK || string(r.body) != "removed elsewhere" {
		t.Fatalf("before the removal: HTTP %d %q", r.status, r.body)
	}
	if err := f.st.DeleteFirmware(f.ctx, fw.ID); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.blobs.String(), filepath.FromSlash(fw.BlobKey))); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		r := f.get(http.MethodGet, u)
		return r.status == http.StatusNotFound && strings.Contains(string(r.body), "no longer exists")
	}, "the download to answer 404 no longer exists")
}
