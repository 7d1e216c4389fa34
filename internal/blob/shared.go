package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// Shared files: a download of a 64 KiB firmware from the folder store
// spent about a fifth of its CPU opening, stat-ing and closing the file
// (three system calls, the open with a path walk). OpenShared keeps each
// file open between downloads instead, and every download reads it at its
// own offsets (pread, or sendfile with an offset), so that one descriptor
// serves any number of downloads at once.
//
// A kept descriptor must not outlive the file it was opened for:
//   - Delete through this store drops it at once; a download that had it
//     finishes (as one that had opened the file would), the next one finds
//     no file;
//   - a file deleted or replaced behind the store's back (another replica
//     on a shared folder, an operator) is seen within sharedRecheck: a
//     download that finds its entry older than that stats the path first
//     and reopens when it no longer names the same file (device, inode,
//     size and modification time);
//   - a file nobody downloaded for sharedIdle is closed by the next sweep,
//     so that a file deleted elsewhere does not hold its disk space.

const (
	// sharedRecheck is how long a kept descriptor is trusted without
	// checking that its path still names it. A download costs one stat
	// per this time and file, nothing in between.
	sharedRecheck = 100 * time.Millisecond
	// sharedIdle is how long a file nobody downloads stays open.
	sharedIdle = time.Minute
	// sharedMax bounds the files kept open; a rollout serves a few.
	sharedMax = 64
)

// SharedFile is a file of the folder store held open for any number of
// readers at once. It has no offset of its own: read it with ReadAt, or
// send it with sendfile and an explicit offset from Fd. Call Release
// once done.
type SharedFile struct {
	f       *os.File
	fd      int
	key     string
	size    int64
	modTime time.Time
	id      fileID
	// refs counts the cache's reference (while the file is in it) and the
	// readers'; the last Release closes the file.
	refs atomic.Int64
	// checked is when the path was last found to name this file (unix
	// ns, wall clock); used also tells the sweep that the file is wanted.
	checked atomic.Int64
}

// fileID tells whether a path still names the file that was opened.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    syscall.Timespec
}

func idOf(st *syscall.Stat_t) fileID {
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim}
}

// Size is the file's size when it was opened; a file of the store never
// changes while it has its name.
func (f *SharedFile) Size() int64 { return f.size }

// ModTime is the file's modification time.
func (f *SharedFile) ModTime() time.Time { return f.modTime }

// Fd is the file's descriptor, valid until Release. Use it with system
// calls that take an offset (sendfile, pread): it has no position of its
// own to use.
func (f *SharedFile) Fd() int { return f.fd }

// ReadAt reads len(p) bytes at off, as io.ReaderAt.
func (f *SharedFile) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// Release ends a reader's use of the file.
func (f *SharedFile) Release() {
	if f.refs.Add(-1) == 0 {
		f.f.Close()
	}
}

// acquire takes a reader's reference unless the file is being closed.
func (f *SharedFile) acquire() bool {
	for {
		n := f.refs.Load()
		if n == 0 {
			return false
		}
		if f.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// sharedFiles is the FS's cache of open files by key.
type sharedFiles struct {
	mu    sync.RWMutex
	files map[string]*SharedFile
	// gen moves on every drop: a file opened before a Delete is not cached
	// after it.
	gen   uint64
	swept atomic.Int64 // when the last sweep ran, unix ns
}

// OpenShared returns the file under key, opened once for every reader;
// a missing key answers ota.ENOTFOUND. Call Release on the file once done.
func (s *FS) OpenShared(ctx context.Context, key string) (*SharedFile, error) {
	now := time.Now().UnixNano()
	c := &s.shared
	c.mu.RLock()
	f := c.files[key]
	ok := f != nil && f.acquire()
	c.mu.RUnlock()
	if ok {
		if now-f.checked.Load() < int64(sharedRecheck) {
			return f, nil
		}
		// Every download that finds the file due checks it (the few that
		// arrive during one check each stat the path too): none is served
		// from a file removed more than sharedRecheck ago.
		if s.stillNames(f) {
			f.checked.Store(now)
			s.sweepShared(now)
			return f, nil
		}
		f.Release()
		s.drop(key, f)
	}
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	f, err := s.openShared(key, now)
	if err != nil {
		return nil, err
	}
	s.keep(f, gen)
	s.sweepShared(now)
	return f, nil
}

// openShared opens the file under key with one reference, the caller's.
func (s *FS) openShared(key string, now int64) (*SharedFile, error) {
	file, err := openRead(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ota.Errorf(ota.ENOTFOUND, "file %s is missing from the blob store", key)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	fd := int(file.Fd())
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		file.Close()
		return nil, fmt.Errorf("stat blob: %w", err)
	}
	f := &SharedFile{f: file, fd: fd, key: key, size: st.Size, modTime: time.Unix(st.Mtim.Unix()), id: idOf(&st)}
	f.refs.Store(1)
	f.checked.Store(now)
	return f, nil
}

// stillNames reports whether f's path still names the file f holds open.
func (s *FS) stillNames(f *SharedFile) bool {
	var st syscall.Stat_t
	err := ignoringEINTR(func() error { return syscall.Stat(s.path(f.key), &st) })
	return err == nil && idOf(&st) == f.id
}

// keep puts f in the cache, with a reference of the cache's own, unless
// something was dropped since gen was read (f may be a file that a Delete
// removed after it was opened).
func (s *FS) keep(f *SharedFile, gen uint64) {
	c := &s.shared
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.files[f.key] != nil {
		return // a file deleted since, or another download's copy
	}
	if c.files == nil {
		c.files = map[string]*SharedFile{}
	}
	if len(c.files) >= sharedMax {
		for k, old := range c.files {
			delete(c.files, k)
			old.Release()
			break
		}
	}
	f.refs.Add(1)
	c.files[f.key] = f
}

// drop removes the cache's reference to the file under key (only f when
// f is not nil).
func (s *FS) drop(key string, f *SharedFile) {
	c := &s.shared
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	old := c.files[key]
	if old == nil || (f != nil && old != f) {
		return
	}
	delete(c.files, key)
	old.Release()
}

// sweepShared closes, at most once per sharedRecheck, the files nobody has
// downloaded for sharedIdle.
func (s *FS) sweepShared(now int64) {
	c := &s.shared
	last := c.swept.Load()
	if now-last < int64(sharedRecheck) || !c.swept.CompareAndSwap(last, now) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, f := range c.files {
		if now-f.checked.Load() >= int64(sharedIdle) {
			delete(c.files, k)
			f.Release()
		}
	}
}
