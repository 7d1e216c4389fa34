package blob_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/ota"
)

func newFS(t *testing.T) (*blob.FS, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// files lists every regular file under dir, temporary ones included.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t *testing.T, s blob.Store, key string, content []byte) blob.Writer {
	t.Helper()
	w, err := s.Create(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestFSCommitOpenDelete(t *testing.T) {
	ctx := context.Background()
	s, dir := newFS(t)
	content := bytes.Repeat([]byte("firmware"), 1000)
	w := write(t, s, "firmware/abc-1", content)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("abort after commit: %v", err)
	}
	if got := files(t, dir); len(got) != 1 || got[0] != "firmware/abc-1" {
		t.Fatalf("files after commit: %v", got)
	}

	obj, err := s.Open(ctx, "firmware/abc-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := obj.Content.(*os.File); !ok {
		t.Errorf("content is %T, want *os.File for sendfile", obj.Content)
	}
	if obj.Size != int64(len(content)) || obj.ModTime.IsZero() {
		t.Errorf("size %d modtime %v", obj.Size, obj.ModTime)
	}
	if _, err := obj.Content.Seek(8, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj.Content)
	obj.Close()
	if err != nil || !bytes.Equal(got, content[8:]) {
		t.Fatalf("read after seek: %d bytes, err %v", len(got), err)
	}

	if err := s.Delete(ctx, "firmware/abc-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "firmware/abc-1"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Open(ctx, "firmware/abc-1"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Fatalf("open deleted: %v, want not found", err)
	}
}

func TestFSAbortLeavesNothing(t *testing.T) {
	s, dir := newFS(t)
	w := write(t, s, "firmware/x", []byte("refused upload"))
	if got := files(t, dir); len(got) != 1 {
		t.Fatalf("want one temporary file while writing, have %v", got)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("files left after abort: %v", got)
	}
	if err := w.Commit(context.Background()); err == nil {
		t.Fatal("commit after abort succeeded")
	}
}

// A process killed mid-upload leaves its temporary file; the next start
// removes it and keeps every committed file.
func TestFSOpenSweepsInterruptedUploads(t *testing.T) {
	ctx := context.Background()
	s, dir := newFS(t)
	if err := write(t, s, "firmware/kept", []byte("kept")).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	_ = write(t, s, "firmware/interrupted", []byte("interrupted")) // neither committed nor aborted: the crash
	if got := files(t, dir); len(got) != 2 {
		t.Fatalf("want the committed and the temporary file before restart, have %v", got)
	}
	if _, err := blob.NewFS(dir); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); len(got) != 1 || got[0] != "firmware/kept" {
		t.Fatalf("after restart have %v, want only firmware/kept", got)
	}
}

func TestFSCommitRefusesExistingKey(t *testing.T) {
	ctx := context.Background()
	s, dir := newFS(t)
	if err := write(t, s, "k", []byte("one")).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err := write(t, s, "k", []byte("two")).Commit(ctx)
	if ota.ErrorCode(err) != ota.ECONFLICT {
		t.Fatalf("second commit: %v, want conflict", err)
	}
	if got := files(t, dir); len(got) != 1 {
		t.Fatalf("files: %v", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "k"))
	if err != nil || string(b) != "one" {
		t.Fatalf("first content replaced: %q %v", b, err)
	}
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"firmware/abc-123", true},
		{"a", true},
		{"a/b/c.bin", true},
		{"", false},
		{"/etc/passwd", false},
		{"../x", false},
		{"a/../../x", false},
		{"a/..", false},
		{"..", false},
		{".", false},
		{"a//b", false},
		{"a/./b", false},
		{"a/", false},
		{`a\..\b`, false},
		{"a\x00b", false},
		{".upload-123", false},
	}
	for _, tt := range tests {
		err := blob.CheckKey(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("CheckKey(%q) = %v, want ok %v", tt.key, err, tt.ok)
		}
	}
	s, _ := newFS(t)
	for _, key := range []string{"../escape", "/abs"} {
		if _, err := s.Open(context.Background(), key); ota.ErrorCode(err) != ota.EINVALID {
			t.Errorf("Open(%q) = %v, want invalid", key, err)
		}
		if err := s.Delete(context.Background(), key); ota.ErrorCode(err) != ota.EINVALID {
			t.Errorf("Delete(%q) = %v, want invalid", key, err)
		}
		if _, err := s.Create(context.Background(), key); ota.ErrorCode(err) != ota.EINVALID {
			t.Errorf("Create(%q) = %v, want invalid", key, err)
		}
	}
}

// OpenShared opens a file once for every reader; Delete through the store
// stops new readers at once while one that has the file still reads it.
func TestFSOpenSharedDelete(t *testing.T) {
	ctx := context.Background()
	s, _ := newFS(t)
	content := bytes.Repeat([]byte("shared"), 5000)
	if err := write(t, s, "firmware/a", content).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := s.OpenShared(ctx, "firmware/a")
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.OpenShared(ctx, "firmware/a")
	if err != nil {
		t.Fatal(err)
	}
	if first != second || first.Size() != int64(len(content)) {
		t.Fatalf("two opens: the same file %t, size %d; want one file of %d bytes", first == second, first.Size(), len(content))
	}
	second.Release()
	if err := s.Delete(ctx, "firmware/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenShared(ctx, "firmware/a"); ota.ErrorCode(err) != ota.ENOTFOUND {
		t.Fatalf("OpenShared after Delete: %v, want ENOTFOUND", err)
	}
	got := make([]byte, 100)
	if n, err := first.ReadAt(got, 6000); err != nil || !bytes.Equal(got[:n], content[6000:6100]) {
		t.Fatalf("a reader that had the file: ReadAt %d bytes, %v", n, err)
	}
	first.Release()
	if _, err := s.OpenShared(ctx, "../x"); ota.ErrorCode(err) != ota.EINVALID {
		t.Fatalf("OpenShared of a bad key: %v, want EINVALID", err)
	}
}

// A file removed or replaced behind the store's back (another replica on
// a shared folder) is no longer served once the kept descriptor is
// checked again, within a fraction of a second.
func TestFSOpenSharedNoticesChangesBehindItsBack(t *testing.T) {
	ctx := context.Background()
	s, dir := newFS(t)
	if err := write(t, s, "firmware/b", []byte("old content")).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	read := func() (string, error) {
		f, err := s.OpenShared(ctx, "firmware/b")
		if err != nil {
			return "", err
		}
		defer f.Release()
		b := make([]byte, f.Size())
		_, err = f.ReadAt(b, 0)
		return string(b), err
	}
	if got, err := read(); got != "old content" || err != nil {
		t.Fatalf("first read: %q, %v", got, err)
	}
	path := filepath.Join(dir, "firmware", "b")
	replacement := filepath.Join(dir, "replacement")
	if err := os.WriteFile(replacement, []byte("new content, longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(replacement, path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { got, _ := read(); return got == "new content, longer" }, "the replaced file to be served")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := read(); return ota.ErrorCode(err) == ota.ENOTFOUND }, "the removed file to be missing")
}

// Readers at once, while the file is deleted and written again under the
// same key: every read sees one whole version, and no descriptor is
// closed under a reader (run with -race).
func TestFSOpenSharedConcurrent(t *testing.T) {
	ctx := context.Background()
	s, _ := newFS(t)
	content := bytes.Repeat([]byte("0123456789"), 1000)
	if err := write(t, s, "firmware/c", content).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, len(content))
			for range 200 {
				f, err := s.OpenShared(ctx, "firmware/c")
				if ota.ErrorCode(err) == ota.ENOTFOUND {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				n, err := f.ReadAt(buf, 0)
				f.Release()
				if err != nil || !bytes.Equal(buf[:n], content) {
					errs <- fmt.Errorf("read %d bytes, %v; equal %t", n, err, bytes.Equal(buf[:n], content))
					return
				}
			}
		}()
	}
	for range 20 {
		if err := s.Delete(ctx, "firmware/c"); err != nil {
			t.Fatal(err)
		}
		if err := write(t, s, "firmware/c", content).Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
