package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/otter-ota/otter/internal/ota"
)

// File is a stored file and what its content must be.
type File struct {
	Key    string
	Size   int64
	SHA256 string // lowercase hex
}

// Copied says what Copy did with a file.
type Copied int

// The outcomes of Copy.
const (
	// CopiedNow means the file was copied.
	CopiedNow Copied = iota
	// AlreadyThere means the destination held the file with the right
	// content already (read and hashed), so it was left alone.
	AlreadyThere
	// Replaced means the destination held a damaged file under the key,
	// which was replaced by the source's.
	Replaced
)

// Copy copies f from src to dst under the same key, hashing what it sends:
// a source file of the wrong size or SHA-256 is refused and nothing is
// committed. A file already in dst is read and hashed first, so running
// Copy again copies nothing and a damaged copy is replaced.
func Copy(ctx context.Context, src, dst Store, f File) (Copied, error) {
	how := CopiedNow
	switch err := Verify(ctx, dst, f); {
	case err == nil:
		return AlreadyThere, nil
	case ota.ErrorCode(err) == ota.EMISMATCH:
		if err := dst.Delete(ctx, f.Key); err != nil {
			return 0, err
		}
		how = Replaced
	case ota.ErrorCode(err) != ota.ENOTFOUND:
		return 0, err
	}
	obj, err := src.Open(ctx, f.Key)
	if err != nil {
		return 0, fmt.Errorf("source: %w", err)
	}
	defer obj.Close()
	w, err := dst.Create(ctx, f.Key)
	if err != nil {
		return 0, err
	}
	defer w.Abort()
	if err := copyChecked(w, obj.Content, f, "the source file"); err != nil {
		return 0, err
	}
	return how, w.Commit(ctx)
}

// Verify reads the file under f.Key and checks its size and SHA-256: a
// missing file answers ota.ENOTFOUND, a different one ota.EMISMATCH.
func Verify(ctx context.Context, s Store, f File) error {
	obj, err := s.Open(ctx, f.Key)
	if err != nil {
		return err
	}
	defer obj.Close()
	return copyChecked(io.Discard, obj.Content, f, "the stored file")
}

// copyChecked copies r to w and checks that what passed is f.
func copyChecked(w io.Writer, r io.Reader, f File, what string) error {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, f.Size+1))
	if err != nil {
		return fmt.Errorf("copy %s: %w", f.Key, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != f.Size || sum != f.SHA256 {
		return &ota.Error{Code: ota.EMISMATCH, Message: fmt.Sprintf(
			"%s %s has %d bytes with SHA-256 %s, want %d bytes with %s", what, f.Key, n, sum, f.Size, f.SHA256)}
	}
	return nil
}
