package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/otter-ota/otter/internal/blob"
)

// blobCheckTimeout bounds the check, at start, that the bucket answers.
const blobCheckTimeout = 15 * time.Second

// checkBlobFlags refuses, before anything is opened, storage settings
// that cannot work together.
func (c Config) checkBlobFlags(dbKind string) error {
	s3 := blob.IsS3URL(c.Blob)
	if s3 && dbKind == "sqlite" {
		return errors.New("--blob s3://... needs --db postgres://...: firmware in a bucket is for several replicas, " +
			"and SQLite serves one process only (cluster mode needs PostgreSQL)")
	}
	if c.DownloadRedirect && !s3 {
		return errors.New("--download-redirect needs --blob s3://...: only an object store can serve downloads itself")
	}
	return nil
}

// openBlobs opens the firmware storage named by --blob and makes sure it
// answers, so a wrong bucket or endpoint stops the start with a message
// naming the flag rather than failing the first upload.
func (s *Server) openBlobs(ctx context.Context) (blob.Opened, error) {
	getenv := s.cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	st, err := blob.Open(s.cfg.Blob, filepath.Join(s.cfg.DataDir, "blobs"), getenv)
	if err != nil {
		return nil, fmt.Errorf("open firmware storage: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, blobCheckTimeout)
	defer cancel()
	if err := st.Check(cctx); err != nil {
		return nil, fmt.Errorf("--blob: %w", err)
	}
	s.log.Info("firmware storage", "blob", st.String(), "download_redirect", s.cfg.DownloadRedirect)
	return st, nil
}
