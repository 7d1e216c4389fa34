package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/blob/s3test"
	"github.com/otter-ota/otter/internal/ota"
)

// content returns n bytes that differ at every offset that matters, so a
// read from the wrong place cannot pass for the right one.
func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// writeChunks writes b in 1 MiB writes, as a request body arrives.
func writeChunks(t *testing.T, w blob.Writer, b []byte) {
	t.Helper()
	for len(b) > 0 {
		n := min(len(b), 1<<20)
		if _, err := w.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
}

func TestS3StreamingUpload(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	s := srv.Store(t, bucket, "otter", blob.MinPartSize)
	file := content(4*blob.MinPartSize + 12345) // four full parts and a short one

	w, err := s.Create(ctx, "firmware/big")
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, file)
	// Parts went out while writing: the store holds an unfinished upload,
	// and no object yet.
	if got := srv.Objects(t, bucket); !slices.Equal(got, []string{"upload:otter/firmware/big"}) {
		t.Fatalf("before commit the bucket holds %v, want only the unfinished upload", got)
	}
	if _, err := s.Open(ctx, "firmware/big"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Fatalf("open before commit: %v, want not found", err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("abort after commit: %v", err)
	}
	if got := srv.Objects(t, bucket); !slices.Equal(got, []string{"otter/firmware/big"}) {
		t.Fatalf("after commit the bucket holds %v", got)
	}
	if got := srv.Content(t, bucket, "otter/firmware/big"); !bytes.Equal(got, file) {
		t.Fatalf("stored %d bytes differ from the %d written", len(got), len(file))
	}
}

func TestS3SmallFileIsOnePut(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	s := srv.Store(t, bucket, "", 0)
	w, err := s.Create(ctx, "firmware/small")
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, []byte("small firmware"))
	if got := srv.Objects(t, bucket); len(got) != 0 {
		t.Fatalf("a file smaller than a part reached the store before commit: %v", got)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	obj, err := s.Open(ctx, "firmware/small")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj.Content)
	if err != nil || string(got) != "small firmware" || obj.Size != 14 || obj.ModTime.IsZero() {
		t.Fatalf("read %q (size %d, modtime %v): %v", got, obj.Size, obj.ModTime, err)
	}
}

func TestS3AbortLeavesNothing(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	s := srv.Store(t, bucket, "p", blob.MinPartSize)
	for _, size := range []int{100, 2*blob.MinPartSize + 1} {
		w, err := s.Create(ctx, "firmware/refused")
		if err != nil {
			t.Fatal(err)
		}
		writeChunks(t, w, content(size))
		if err := w.Abort(); err != nil {
			t.Fatalf("abort after %d bytes: %v", size, err)
		}
		if got := srv.Objects(t, bucket); len(got) != 0 {
			t.Fatalf("after aborting %d bytes the bucket holds %v", size, got)
		}
		if err := w.Commit(ctx); err == nil {
			t.Fatal("commit after abort succeeded")
		}
	}
}

// A request cancelled mid-upload (the operator's connection dropped) still
// aborts the multipart upload.
func TestS3AbortAfterCancel(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	s := srv.Store(t, bucket, "", blob.MinPartSize)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.Create(ctx, "firmware/cancelled")
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, content(blob.MinPartSize+1))
	cancel()
	if _, err := w.Write(content(blob.MinPartSize)); err == nil {
		t.Fatal("a part was sent after the upload's context was cancelled")
	}
	if err := w.Commit(context.Background()); err == nil {
		t.Fatal("commit of a failed upload succeeded")
	}
	if got := srv.Objects(t, bucket); len(got) != 0 {
		t.Fatalf("the bucket holds %v after a cancelled upload", got)
	}
}

func TestS3RangeReads(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	s := srv.Store(t, bucket, "", blob.MinPartSize)
	file := content(blob.MinPartSize + 1000)
	commit(t, s, "firmware/r", file)

	obj, err := s.Open(ctx, "firmware/r")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	// Served the way downloads are: ETag and modification time from otter.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"sha256-x"`)
		http.ServeContent(w, r, "", obj.ModTime, obj.Content)
	})
	tests := []struct {
		name, rng, ifRange string
		status             int
		want               []byte
	}{
		{"whole", "", "", http.StatusOK, file},
		{"resume", "bytes=4000-", `"sha256-x"`, http.StatusPartialContent, file[4000:]},
		{"middle across the part boundary", "bytes=5242000-5243000", "", http.StatusPartialContent, file[5242000:5243001]},
		{"suffix", "bytes=-10", "", http.StatusPartialContent, file[len(file)-10:]},
		{"stale If-Range sends everything", "bytes=100-", `"sha256-old"`, http.StatusOK, file},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.rng != "" {
			req.Header.Set("Range", tt.rng)
		}
		if tt.ifRange != "" {
			req.Header.Set("If-Range", tt.ifRange)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.status || !bytes.Equal(rec.Body.Bytes(), tt.want) {
			t.Errorf("%s: status %d with %d bytes, want %d with %d", tt.name, rec.Code, rec.Body.Len(), tt.status, len(tt.want))
		}
	}
}

func TestS3OpenDeleteMissing(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	s := srv.Store(t, bucket, "x", 0)
	if _, err := s.Open(ctx, "firmware/none"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Fatalf("open missing: %v, want not found", err)
	}
	commit(t, s, "firmware/d", []byte("x"))
	for range 2 { // deleting twice is not an error
		if err := s.Delete(ctx, "firmware/d"); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Objects(t, bucket); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	if _, err := s.Create(ctx, "../escape"); ota.ErrorCode(err) != ota.EINVALID {
		t.Fatalf("create ../escape: %v, want invalid", err)
	}
}

func TestS3PresignedURL(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	s := srv.Store(t, bucket, "fw", 0)
	file := content(70000)
	commit(t, s, "firmware/p", file)

	u, err := s.Presign(ctx, http.MethodGet, "firmware/p", "demo-default-1.0.bin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A device follows a redirect to this URL: a real GET, then a resume.
	resp := get(t, u.String(), "")
	if resp.status != http.StatusOK || !bytes.Equal(resp.body, file) {
		t.Fatalf("GET presigned: %d with %d bytes", resp.status, len(resp.body))
	}
	if cd := resp.header.Get("Content-Disposition"); !strings.Contains(cd, "demo-default-1.0.bin") {
		t.Errorf("Content-Disposition %q does not name the file", cd)
	}
	if resp.header.Get("ETag") == "" {
		t.Error("no ETag: a device could not resume with If-Range")
	}
	part := get(t, u.String(), "bytes=60000-")
	if part.status != http.StatusPartialContent || !bytes.Equal(part.body, file[60000:]) ||
		!strings.HasPrefix(part.header.Get("Content-Range"), "bytes 60000-") {
		t.Fatalf("ranged GET presigned: %d %q with %d bytes", part.status, part.header.Get("Content-Range"), len(part.body))
	}
	// The URL is for GET only, and for this object only.
	tampered := strings.Replace(u.String(), "firmware/p", "firmware/q", 1)
	if r := get(t, tampered, ""); r.status != http.StatusForbidden {
		t.Errorf("GET of another key with the same signature: %d, want 403", r.status)
	}
	head, err := s.Presign(ctx, http.MethodHead, "firmware/p", "f.bin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	hr, err := http.Head(head.String())
	if err != nil || hr.StatusCode != http.StatusOK || hr.ContentLength != int64(len(file)) {
		t.Fatalf("HEAD presigned: %v %v", hr, err)
	}
	hr.Body.Close()
}

func TestS3PresignedURLExpires(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	s := srv.Store(t, bucket, "", 0)
	commit(t, s, "firmware/e", []byte("x"))
	u, err := s.Presign(ctx, http.MethodGet, "firmware/e", "e.bin", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for get(t, u.String(), "").status == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("a presigned URL of 1 s still works after 10 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestS3UnreachableStoreFailsClearly(t *testing.T) {
	ctx := context.Background()
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := ln.URL
	ln.Close() // nothing listens here now
	getenv := func(k string) string {
		return map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}[k]
	}
	st, err := blob.Open("s3://nowhere/fw?endpoint="+addr, "", getenv)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Check(ctx)
	if ota.ErrorCode(err) != ota.EUNAVAILABLE || !strings.Contains(err.Error(), "s3://nowhere/fw") {
		t.Fatalf("check: %v, want unavailable naming the store", err)
	}
	w, err := st.Create(ctx, "firmware/x")
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, []byte("firmware"))
	err = w.Commit(ctx)
	if ota.ErrorCode(err) != ota.EUNAVAILABLE || !strings.Contains(err.Error(), "s3://nowhere/fw") {
		t.Fatalf("commit: %v, want unavailable naming the store", err)
	}
}

func TestS3MissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	st, err := blob.Open(srv.URL("no-such-bucket", ""), "", srv.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(context.Background()); ota.ErrorCode(err) != ota.ENOTFOUND || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("check: %v, want not found naming the bucket", err)
	}
}

func TestCopyToS3(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	dst := srv.Store(t, bucket, "otter", blob.MinPartSize)
	src, _ := newFS(t)
	good, bad := content(blob.MinPartSize+7), []byte("damaged on disk")
	commit(t, src, "firmware/good", good)
	commit(t, src, "firmware/bad", bad)
	goodFile := blob.File{Key: "firmware/good", Size: int64(len(good)), SHA256: sum(good)}
	badFile := blob.File{Key: "firmware/bad", Size: int64(len(bad)), SHA256: sum([]byte("what was uploaded"))}

	if how, err := blob.Copy(ctx, src, dst, goodFile); err != nil || how != blob.CopiedNow {
		t.Fatalf("first copy: %v %v", how, err)
	}
	if how, err := blob.Copy(ctx, src, dst, goodFile); err != nil || how != blob.AlreadyThere {
		t.Fatalf("second copy: %v %v, want already there", how, err)
	}
	if _, err := blob.Copy(ctx, src, dst, badFile); ota.ErrorCode(err) != ota.EMISMATCH {
		t.Fatalf("copy of a damaged file: %v, want mismatch", err)
	}
	if got := srv.Objects(t, bucket); !slices.Equal(got, []string{"otter/firmware/good"}) {
		t.Fatalf("bucket holds %v, want only the good file", got)
	}
	// A damaged copy in the bucket is replaced.
	commitOver(t, dst, "firmware/good", []byte("truncated"))
	if how, err := blob.Copy(ctx, src, dst, goodFile); err != nil || how != blob.Replaced {
		t.Fatalf("copy over a damaged file: %v %v, want replaced", how, err)
	}
	if err := blob.Verify(ctx, dst, goodFile); err != nil {
		t.Fatal(err)
	}
}

func commit(t *testing.T, s blob.Store, key string, b []byte) {
	t.Helper()
	w, err := s.Create(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, b)
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// commitOver replaces key, as a damaged earlier copy would have.
func commitOver(t *testing.T, s blob.Store, key string, b []byte) {
	t.Helper()
	if err := s.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	commit(t, s, key, b)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func get(t *testing.T, url, rng string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}
