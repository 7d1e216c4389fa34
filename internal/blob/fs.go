package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/otter-ota/otter/internal/ota"
)

// tempPrefix names files still being written; keys may not use it, so a
// temporary file can never be mistaken for a committed one.
const tempPrefix = ".upload-"

// FS is a Store over a local folder: key "a/b" is the file root/a/b.
type FS struct {
	root   string
	shared sharedFiles // files kept open for downloads (OpenShared)
}

// NewFS returns a Store over the folder root, creating it if needed. It
// removes the temporary files of uploads that a crash (kill -9, power
// loss) interrupted: only one server uses a folder, and at its start no
// upload is in progress, so every temporary file is garbage.
func NewFS(root string) (*FS, error) {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("create blob folder: %w", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("blob folder %s: %w", root, err)
	}
	s := &FS{root: abs}
	if err := s.sweep(); err != nil {
		return nil, err
	}
	return s, nil
}

// sweep removes the temporary files left in the root folder.
func (s *FS) sweep() error {
	left, err := filepath.Glob(filepath.Join(s.root, tempPrefix+"*"))
	if err != nil {
		return fmt.Errorf("list interrupted uploads: %w", err)
	}
	for _, p := range left {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove interrupted upload: %w", err)
		}
	}
	return nil
}

// Create starts a temporary file in the root folder, on the same filesystem
// as every key, so that Commit is an atomic link.
func (s *FS) Create(ctx context.Context, key string) (Writer, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.root, tempPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create temporary blob: %w", err)
	}
	return &fsWriter{s: s, f: f, key: key}, nil
}

// String names the store in messages.
func (s *FS) String() string { return s.root }

// Open opens the file under key.
func (s *FS) Open(ctx context.Context, key string) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	f, err := openRead(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ota.Errorf(ota.ENOTFOUND, "file %s is missing from the blob store", key)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat blob: %w", err)
	}
	return &Object{Content: f, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// openRead opens a file for reading as os.Open does, in two system calls
// instead of six: os.Open makes a descriptor non-blocking, fails to add it
// to the poller (Linux's epoll refuses regular files) and makes it
// blocking again, which a download answered from a blob pays every time.
// os.NewFile keeps a blocking descriptor out of the poller.
func openRead(path string) (*os.File, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// Delete removes the file under key.
func (s *FS) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	err := os.Remove(s.path(key))
	// The file is gone (or a retry will remove it): no new download may
	// start from a descriptor kept open.
	s.drop(key, nil)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob: %w", err)
	}
	return nil
}

func (s *FS) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

type fsWriter struct {
	s    *FS
	f    *os.File
	key  string
	done bool
}

func (w *fsWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// Commit syncs the temporary file and links it under key. A hard link
// rather than a rename refuses to replace an existing file, and the final
// directory sync makes the new name survive a crash.
func (w *fsWriter) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("blob: commit after commit or abort")
	}
	defer w.Abort() // removes the temporary name whatever happens
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close blob: %w", err)
	}
	return w.link(w.key)
}

func (w *fsWriter) link(key string) error {
	dst := w.s.path(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("create blob folder: %w", err)
	}
	err := os.Link(w.f.Name(), dst)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		// Some filesystems (FUSE, SMB) have no hard links: check, then rename.
		if _, serr := os.Lstat(dst); serr == nil {
			err = fs.ErrExist
		} else {
			err = os.Rename(w.f.Name(), dst)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return ota.Errorf(ota.ECONFLICT, "blob %s exists already", key)
	}
	if err != nil {
		return fmt.Errorf("commit blob: %w", err)
	}
	return syncDir(filepath.Dir(dst))
}

// Abort closes and removes the temporary file.
func (w *fsWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close() // already closed after a commit; the error says nothing new
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove temporary blob: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync blob folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync blob folder: %w", err)
	}
	return nil
}
