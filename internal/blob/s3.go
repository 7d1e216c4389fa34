package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/otter-ota/otter/internal/ota"
)

// s3Retries bounds minio-go's retries of a failed request (10 by default,
// with backoff): an unreachable store must fail an upload in seconds.
const s3Retries = 3

// abortTimeout bounds the clean-up of a failed upload, which runs even when
// the request that started it was cancelled.
const abortTimeout = 30 * time.Second

// S3 is a Store in a bucket of an S3-compatible object store (AWS S3,
// MinIO, Ceph, SeaweedFS, versitygw): key "a/b" is the object prefix/a/b.
// Files are streamed in parts of PartSize bytes, so an upload holds one
// part in memory whatever the file's size.
type S3 struct {
	cfg    S3Config
	client *minio.Client
	core   minio.Core
}

// NewS3 returns a store over the bucket of cfg. It makes no request: Check
// does.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize || cfg.PartSize > maxPartSize {
		return nil, fmt.Errorf("s3 part size %d: want 5 MiB to 5 GiB", cfg.PartSize)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:     cfg.Secure,
		Region:     cfg.Region, // known, so presigning never asks the store for it
		MaxRetries: s3Retries,
	})
	if err != nil {
		return nil, invalidS3("%s: %v", cfg, err)
	}
	return &S3{cfg: cfg, client: client, core: minio.Core{Client: client}}, nil
}

// String names the store in messages, without credentials.
func (s *S3) String() string { return s.cfg.String() }

// Check makes sure the bucket exists and the credentials may read it.
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return s.unavailable("reach the bucket", err)
	}
	if !ok {
		return ota.Errorf(ota.ENOTFOUND, "firmware storage %s: bucket %q does not exist: create it first", s, s.cfg.Bucket)
	}
	return nil
}

// Create starts an upload to key. Nothing is sent until a whole part has
// been written, so a file smaller than a part costs one PUT at Commit.
func (s *S3) Create(ctx context.Context, key string) (Writer, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &s3Writer{s: s, ctx: ctx, key: key, object: s.object(key)}, nil
}

// Open checks that key exists and returns it as a seekable reader that
// fetches from the store with ranged GETs as it is read.
func (s *S3) Open(ctx context.Context, key string) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, s.object(key), minio.StatObjectOptions{})
	if isNotFound(err) {
		return nil, ota.Errorf(ota.ENOTFOUND, "file %s is missing from the blob store", key)
	}
	if err != nil {
		return nil, s.unavailable("read "+key, err)
	}
	r := &s3Reader{ctx: ctx, s: s, object: s.object(key), etag: info.ETag, size: info.Size}
	return &Object{Content: r, Size: info.Size, ModTime: info.LastModified, ETag: `"` + info.ETag + `"`}, nil
}

// Delete removes key; S3 answers a missing key with success too.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.object(key), minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return s.unavailable("delete "+key, err)
	}
	return nil
}

// Presign returns a URL of the store that answers method for key until
// ttl has passed. Signing is local: it makes no request.
func (s *S3) Presign(ctx context.Context, method, key, filename string, ttl time.Duration) (*url.URL, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	params := url.Values{
		"response-content-type":        {"application/octet-stream"},
		"response-content-disposition": {mime.FormatMediaType("attachment", map[string]string{"filename": filename})},
	}
	u, err := s.client.Presign(ctx, method, s.cfg.Bucket, s.object(key), ttl, params)
	if err != nil {
		return nil, fmt.Errorf("presign %s: %w", key, err)
	}
	return u, nil
}

func (s *S3) object(key string) string {
	if s.cfg.Prefix == "" {
		return key
	}
	return s.cfg.Prefix + "/" + key
}

// unavailable names the store and what failed, so an operator whose
// upload fails sees which storage to look at.
func (s *S3) unavailable(what string, err error) error {
	return &ota.Error{Code: ota.EUNAVAILABLE, Message: fmt.Sprintf(
		"firmware storage %s: could not %s: %v", s, what, err)}
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	code := minio.ToErrorResponse(err).Code
	return code == minio.NoSuchKey || code == "NotFound"
}

// s3Writer buffers one part at a time. The multipart upload starts with
// the first full part; Commit sends the rest and completes it, Abort
// aborts it so the store drops every part.
type s3Writer struct {
	s           *S3
	ctx         context.Context // the upload's; Write has no other
	key, object string
	buf         []byte
	uploadID    string
	parts       []minio.CompletePart
	err         error // sticky: a failed part fails the upload
	done        bool
}

// Write buffers p, sending every part that fills up.
func (w *s3Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("blob: write after commit or abort")
	}
	n := 0
	for len(p) > 0 && w.err == nil {
		k := min(int(w.s.cfg.PartSize)-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(w.buf) == int(w.s.cfg.PartSize) {
			w.err = w.sendPart(w.ctx)
		}
	}
	return n, w.err
}

func (w *s3Writer) sendPart(ctx context.Context) error {
	if w.uploadID == "" {
		id, err := w.s.core.NewMultipartUpload(ctx, w.s.cfg.Bucket, w.object, minio.PutObjectOptions{ContentType: "application/octet-stream"})
		if err != nil {
			return w.s.unavailable("start uploading "+w.key, err)
		}
		w.uploadID = id
	}
	n := len(w.parts) + 1
	part, err := w.s.core.PutObjectPart(ctx, w.s.cfg.Bucket, w.object, w.uploadID, n,
		bytes.NewReader(w.buf), int64(len(w.buf)), minio.PutObjectPartOptions{})
	if err != nil {
		return w.s.unavailable(fmt.Sprintf("upload part %d of %s", n, w.key), err)
	}
	w.parts = append(w.parts, minio.CompletePart{PartNumber: n, ETag: part.ETag})
	w.buf = w.buf[:0]
	return nil
}

// Commit sends what is buffered and makes the object visible: one PUT for
// a file smaller than a part, else the last part and the completion.
func (w *s3Writer) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("blob: commit after commit or abort")
	}
	defer w.Abort() // a no-op once committed
	if w.err != nil {
		return w.err
	}
	if err := w.finish(ctx); err != nil {
		return err
	}
	w.done = true
	return nil
}

func (w *s3Writer) finish(ctx context.Context) error {
	if w.uploadID == "" {
		_, err := w.s.core.PutObject(ctx, w.s.cfg.Bucket, w.object, bytes.NewReader(w.buf), int64(len(w.buf)), "", "",
			minio.PutObjectOptions{ContentType: "application/octet-stream"})
		if err != nil {
			return w.s.unavailable("upload "+w.key, err)
		}
		return nil
	}
	if len(w.buf) > 0 {
		if err := w.sendPart(ctx); err != nil {
			return err
		}
	}
	if _, err := w.s.core.CompleteMultipartUpload(ctx, w.s.cfg.Bucket, w.object, w.uploadID, w.parts, minio.PutObjectOptions{}); err != nil {
		return w.s.unavailable("complete the upload of "+w.key, err)
	}
	return nil
}

// Abort drops the buffer and aborts the multipart upload, if one started,
// even when the upload's context is cancelled.
func (w *s3Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done, w.buf = true, nil
	if w.uploadID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), abortTimeout)
	defer cancel()
	if err := w.s.core.AbortMultipartUpload(ctx, w.s.cfg.Bucket, w.object, w.uploadID); err != nil {
		return w.s.unavailable("abort the upload of "+w.key, err)
	}
	return nil
}

// s3Reader reads an object from an offset with one ranged GET per run of
// reads; Seek only moves the offset, so http.ServeContent's seeks to learn
// the size and to a range's start cost nothing. Every GET names the ETag
// seen by Open, so a replaced object is never spliced into a response.
type s3Reader struct {
	ctx       context.Context
	s         *S3
	object    string
	etag      string
	size, off int64
	body      io.ReadCloser
}

func (r *s3Reader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.body == nil {
		if err := r.get(); err != nil {
			return 0, err
		}
	}
	n, err := r.body.Read(p)
	r.off += int64(n)
	if errors.Is(err, io.EOF) && r.off < r.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (r *s3Reader) get() error {
	var opts minio.GetObjectOptions
	if r.off > 0 {
		if err := opts.SetRange(r.off, 0); err != nil {
			return err
		}
	}
	if r.etag != "" {
		if err := opts.SetMatchETag(r.etag); err != nil {
			return err
		}
	}
	body, _, _, err := r.s.core.GetObject(r.ctx, r.s.cfg.Bucket, r.object, opts)
	if err != nil {
		return r.s.unavailable("read "+r.object, err)
	}
	r.body = body
	return nil
}

func (r *s3Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	case io.SeekStart:
	default:
		return 0, fmt.Errorf("blob: bad whence %d", whence)
	}
	if offset < 0 {
		return 0, errors.New("blob: seek before the start")
	}
	if offset != r.off {
		r.Close()
		r.off = offset
	}
	return offset, nil
}

func (r *s3Reader) Close() error {
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}
