package blob

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/otter-ota/otter/internal/ota"
)

// S3 part sizes: S3 refuses parts under 5 MiB (but the last), and a
// multipart upload has at most 10,000 parts, so 16 MiB parts carry files up
// to 156 GiB while buffering one part per upload in memory.
const (
	DefaultPartSize = 16 << 20
	MinPartSize     = 5 << 20
	maxPartSize     = 5 << 30
)

// S3Config says where firmware lives in an S3-compatible store.
type S3Config struct {
	Bucket string
	// Prefix is prepended, with a slash, to every key; "" stores keys at
	// the bucket's root.
	Prefix string
	// Endpoint is host[:port] of the S3 API; Secure selects https.
	Endpoint string
	Secure   bool
	Region   string
	// AccessKey and SecretKey (and SessionToken for temporary credentials)
	// sign every request and presigned URL.
	AccessKey, SecretKey, SessionToken string
	// PartSize is the size of each part of a multipart upload, and so the
	// memory one upload holds; 0 means DefaultPartSize.
	PartSize int64
}

// s3Params lists the query parameters of an s3:// URL.
var s3Params = []string{"endpoint", "region", "part_size"}

// IsS3URL reports whether a --blob setting names S3 storage.
func IsS3URL(spec string) bool { return strings.HasPrefix(spec, "s3://") }

// ParseS3URL reads "s3://bucket/prefix?endpoint=...&region=...&part_size=..."
// with the credentials from the standard AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN variables read by getenv.
// The endpoint is "https://host:port", "http://host:port" or "host:port"
// (https); without one it is AWS S3. The region defaults to AWS_REGION,
// then us-east-1.
func ParseS3URL(raw string, getenv func(string) string) (S3Config, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return S3Config{}, invalidS3("%q is not an S3 URL: want s3://bucket/prefix?endpoint=host:port&region=...", raw)
	}
	if u.User != nil {
		return S3Config{}, invalidS3("the S3 URL must not hold credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	q := u.Query()
	for name := range q {
		if !slices.Contains(s3Params, name) {
			return S3Config{}, invalidS3("unknown S3 URL parameter %q: the URL takes %s", name, strings.Join(s3Params, ", "))
		}
	}
	if err := s3utils.CheckValidBucketNameStrict(u.Host); err != nil {
		return S3Config{}, invalidS3("bucket %q: %v", u.Host, err)
	}
	c := S3Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Region: cmp.Or(q.Get("region"), getenv("AWS_REGION"), "us-east-1")}
	if c.Prefix != "" && CheckKey(c.Prefix) != nil {
		return S3Config{}, invalidS3("S3 prefix %q is not a clean slash-separated path", c.Prefix)
	}
	if c.Endpoint, c.Secure, err = parseEndpoint(q.Get("endpoint")); err != nil {
		return S3Config{}, err
	}
	if c.PartSize, err = parsePartSize(q.Get("part_size")); err != nil {
		return S3Config{}, err
	}
	c.AccessKey, c.SecretKey, c.SessionToken = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN")
	if c.AccessKey == "" || c.SecretKey == "" {
		return S3Config{}, invalidS3("S3 storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	return c, nil
}

func parseEndpoint(e string) (host string, secure bool, err error) {
	switch {
	case e == "":
		return "s3.amazonaws.com", true, nil
	case strings.HasPrefix(e, "https://"), strings.HasPrefix(e, "http://"):
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			return "", false, invalidS3("endpoint %q is not a base URL like http://host:port", e)
		}
		return u.Host, u.Scheme == "https", nil
	case strings.ContainsAny(e, "/?#@"):
		return "", false, invalidS3("endpoint %q is not host:port or http(s)://host:port", e)
	}
	return e, true, nil
}

// parsePartSize reads bytes, or mebibytes with a MiB suffix.
func parsePartSize(s string) (int64, error) {
	if s == "" {
		return DefaultPartSize, nil
	}
	num, mult := s, int64(1)
	if n, ok := strings.CutSuffix(s, "MiB"); ok {
		num, mult = n, 1<<20
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > maxPartSize/mult || n*mult < MinPartSize {
		return 0, invalidS3("part_size %q: want a size from 5MiB to 5GiB, in bytes or with MiB", s)
	}
	return n * mult, nil
}

func invalidS3(format string, args ...any) error {
	return ota.Errorf(ota.EINVALID, "--blob: "+format, args...)
}

// String is the store's URL without credentials, for messages.
func (c S3Config) String() string {
	scheme := "https"
	if !c.Secure {
		scheme = "http"
	}
	return fmt.Sprintf("s3://%s/%s (endpoint %s://%s)", c.Bucket, c.Prefix, scheme, c.Endpoint)
}
