package blob

import (
	"context"
	"fmt"
)

// Opened is a Store that can also be checked and named: what Open returns.
type Opened interface {
	Store
	fmt.Stringer
	// Check answers whether the store can be used now: for S3, that the
	// bucket exists and the credentials reach it.
	Check(ctx context.Context) error
}

// Open returns the store a --blob setting names: "" for the filesystem
// store in dir, "s3://bucket/prefix?endpoint=...&region=..." for S3 with
// credentials read by getenv. It makes no request; call Check.
func Open(spec, dir string, getenv func(string) string) (Opened, error) {
	if spec == "" {
		return NewFS(dir)
	}
	if !IsS3URL(spec) {
		return nil, invalidS3("%q is not a blob store: leave it empty for files in the data folder, or give s3://bucket/prefix?endpoint=host:port", spec)
	}
	cfg, err := ParseS3URL(spec, getenv)
	if err != nil {
		return nil, err
	}
	return NewS3(cfg)
}

// Check answers whether the folder can be used; NewFS has created it.
func (s *FS) Check(ctx context.Context) error { return ctx.Err() }
