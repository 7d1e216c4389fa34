package blob_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/ota"
)

func creds(k string) string {
	return map[string]string{"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk"}[k]
}

func TestParseS3URL(t *testing.T) {
	base := blob.S3Config{Region: "us-east-1", AccessKey: "ak", SecretKey: "sk", PartSize: blob.DefaultPartSize}
	with := func(f func(*blob.S3Config)) blob.S3Config { c := base; f(&c); return c }
	tests := []struct {
		url  string
		want blob.S3Config
		err  string // part of the error; "" for success
	}{
		{"s3://firmware", with(func(c *blob.S3Config) { c.Bucket, c.Endpoint, c.Secure = "firmware", "s3.amazonaws.com", true }), ""},
		{"s3://firmware/otter/prod/?endpoint=http://127.0.0.1:7070&region=eu-west-1&part_size=5MiB", with(func(c *blob.S3Config) {
			c.Bucket, c.Prefix, c.Endpoint, c.Region, c.PartSize = "firmware", "otter/prod", "127.0.0.1:7070", "eu-west-1", 5<<20
		}), ""},
		{"s3://firmware?endpoint=minio.local:9000&part_size=8388608", with(func(c *blob.S3Config) {
			c.Bucket, c.Endpoint, c.Secure, c.PartSize = "firmware", "minio.local:9000", true, 8<<20
		}), ""},
		{"s3://firmware?endpoint=https://s3.example.com", with(func(c *blob.S3Config) { c.Bucket, c.Endpoint, c.Secure = "firmware", "s3.example.com", true }), ""},
		{"http://fw", blob.S3Config{}, "not an S3 URL"},
		{"s3:///prefix", blob.S3Config{}, "not an S3 URL"},
		{"s3://ak:sk@fw", blob.S3Config{}, "must not hold credentials"},
		{"s3://Fw_x:99", blob.S3Config{}, `bucket "Fw_x:99"`},
		{"s3://firmware?endpoit=x", blob.S3Config{}, `unknown S3 URL parameter "endpoit"`},
		{"s3://firmware/a/../b", blob.S3Config{}, "not a clean"},
		{"s3://firmware?endpoint=http://h/path", blob.S3Config{}, "not a base URL"},
		{"s3://firmware?endpoint=h/x", blob.S3Config{}, "not host:port"},
		{"s3://firmware?part_size=1MiB", blob.S3Config{}, "part_size"},
		{"s3://firmware?part_size=lots", blob.S3Config{}, "part_size"},
	}
	for _, tt := range tests {
		got, err := blob.ParseS3URL(tt.url, creds)
		if tt.err != "" {
			if ota.ErrorCode(err) != ota.EINVALID || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "--blob: ") {
				t.Errorf("%s: %v, want an invalid --blob error with %q", tt.url, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
		} else if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tt.url, d)
		}
	}
	if _, err := blob.ParseS3URL("s3://firmware", func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("without credentials: %v", err)
	}
}

// FuzzParseS3URL: any --blob value is either refused as invalid or gives a
// usable configuration; none panics.
func FuzzParseS3URL(f *testing.F) {
	for _, s := range []string{"s3://firmware/p?endpoint=http://127.0.0.1:9000&region=x&part_size=5MiB", "s3://b", "s3://b/%zz", "s3://b?part_size=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := blob.ParseS3URL(s, creds)
		if err != nil {
			if ota.ErrorCode(err) != ota.EINVALID {
				t.Fatalf("%q: %v is not an invalid-input error", s, err)
			}
			return
		}
		if c.Bucket == "" || c.Endpoint == "" || c.PartSize < blob.MinPartSize || (c.Prefix != "" && blob.CheckKey(c.Prefix) != nil) {
			t.Fatalf("%q gave an unusable config %+v", s, c)
		}
	})
}
