package sim

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSignHashes(t *testing.T) {
	data := []byte("firmware")
	md, s1, s256 := md5.Sum(data), sha1.Sum(data), sha256.Sum256(data)
	for _, tc := range []struct{ method, want string }{
		{"md5", hex.EncodeToString(md[:])},
		{"MD5", hex.EncodeToString(md[:])},
		{"hmacmd5", hex.EncodeToString(md[:])},
		{"sha1", hex.EncodeToString(s1[:])},
		{"hmacsha1", hex.EncodeToString(s1[:])},
		{"sha256", hex.EncodeToString(s256[:])},
		{"hmacsha256", hex.EncodeToString(s256[:])},
		{"crc32", ""},
		{"", ""},
	} {
		h, err := newSignHash(tc.method)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: accepted, want refused", tc.method)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.method, err)
		}
		h.Write(data)
		if got := hex.EncodeToString(h.Sum(nil)); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.method, got, tc.want)
		}
	}
}

// flakyFile serves image with Range support; its first answer is busy
// (503 with Retry-After) and its second stops halfway through, so a
// download must wait, then resume.
type flakyFile struct {
	image []byte
	mu    sync.Mutex
	calls int
	// ranges are the Range headers received, in order.
	ranges []string
}

func (f *flakyFile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.ranges = append(f.ranges, r.Header.Get("Range"))
	f.mu.Unlock()
	switch n {
	case 1:
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
	case 2:
		w.Header().Set("Content-Length", "10000")
		w.WriteHeader(http.StatusOK)
		w.Write(f.image[:5000]) // the connection ends early
		panic(http.ErrAbortHandler)
	default:
		http.ServeContent(w, r, "fw.bin", time.Time{}, bytes.NewReader(f.image))
	}
}

func TestFetchWaitsForRetryAfterAndResumesWithRange(t *testing.T) {
	image := make([]byte, 10000)
	rand.Read(image)
	srv := httptest.NewServer(&flakyFile{image: image})
	defer srv.Close()
	ff := srv.Config.Handler.(*flakyFile)
	h := sha256.New()
	start := time.Now()
	n, err := fetch(context.Background(), srv.Client(), srv.URL, int64(len(image)), h, func(int) time.Duration { return time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(image)
	if n != int64(len(image)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read %d bytes, hash %x: want the whole image", n, h.Sum(nil))
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("done after %s: the server asked for a second (Retry-After)", waited)
	}
	if got := strings.Join(ff.ranges, "|"); got != "||bytes=5000-" {
		t.Errorf("Range headers %q: want none, none, then a resume from byte 5000", got)
	}
}

func TestFetchRefusesTooManyBytesAndGivesUpOnA404(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gone" {
			http.NotFound(w, r)
			return
		}
		w.Write(make([]byte, 200))
	}))
	defer srv.Close()
	noWait := func(int) time.Duration { return 0 }
	if _, err := fetch(context.Background(), srv.Client(), srv.URL+"/big", 100, sha256.New(), noWait); err != errTooLong {
		t.Errorf("a file longer than announced: %v, want errTooLong", err)
	}
	if _, err := fetch(context.Background(), srv.Client(), srv.URL+"/gone", 100, sha256.New(), noWait); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404: %v, want a failure naming it", err)
	}
}
