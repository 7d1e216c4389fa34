package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/blob/s3test"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// postgresURL returns a fresh PostgreSQL schema: S3 storage is refused on
// SQLite. Without OTTER_TEST_POSTGRES_URL the test is skipped, also in CI,
// whose PostgreSQL pass runs it.
func postgresURL(t *testing.T) string {
	t.Helper()
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skipf("S3 storage needs PostgreSQL: set %s", storetest.PostgresEnv)
	}
	return storetest.PostgresURL(t, base)
}

// startS3 starts otter on PostgreSQL with its firmware in a fresh bucket of
// srv, in 5 MiB parts so that a modest file is a multipart upload.
func startS3(t *testing.T, srv *s3test.Server, redirect bool) (*otter, string) {
	t.Helper()
	bucket := srv.Bucket(t)
	cfg := server.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", DBURL: postgresURL(t),
		Blob: srv.URL(bucket, "otter") + "&part_size=5MiB", DownloadRedirect: redirect, Getenv: srv.Getenv,
		AdminToken: "otr_e2e-admin-token-for-tests-only", Logger: slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start otter: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &otter{t: t, srv: s, api: client.New(s.HTTPURL(), "otr_e2e-admin-token-for-tests-only"), dir: cfg.DataDir}, bucket
}

func TestDevicesDownloadFirmwareStoredInS3(t *testing.T) {
	srv := s3test.Start(t)
	for _, redirect := range []bool{false, true} {
		t.Run("redirect="+strconv.FormatBool(redirect), func(t *testing.T) {
			o, bucket := startS3(t, srv, redirect)
			ctx := o.ctx()
			fw, image := o.firmware("demo", "1.1.0", 11<<20) // three parts of 5 MiB
			if objs := srv.Objects(t, bucket); len(objs) != 1 || !strings.HasPrefix(objs[0], "otter/firmware/") {
				t.Fatalf("bucket after the upload holds %v, want the firmware's object only", objs)
			}
			d, err := o.api.CreateDevice(ctx, "demo", client.DeviceCreate{Key: "d1"})
			if err != nil {
				t.Fatal(err)
			}
			u := o.pushTo(ctx, fw, "d1", d.Secret)
			o.checkDownload(u.URL, image, redirect)

			// The SDK's devices download through the same path.
			sdkFW, _ := o.firmware("sdk", "1.1.0", 300_000)
			o.fleet(ctx, "sdk", 3, nil)
			task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: sdkFW.ID, Target: client.Target{All: true}})
			if err != nil {
				t.Fatal(err)
			}
			if done := o.waitTask(ctx, task.ID, client.TaskCompleted); done.Counts[client.JobSucceeded] != 3 {
				t.Fatalf("SDK devices: counts %v, want 3 succeeded", done.Counts)
			}
		})
	}
}

// pushTo sends fw to one raw MQTT device and returns its upgrade command.
func (o *otter) pushTo(ctx context.Context, fw *client.Firmware, key, secret string) wire.Upgrade {
	o.t.Helper()
	d, _, err := o.dialMQTT("demo", key, secret)
	if err != nil {
		o.t.Fatal(err)
	}
	d.subscribe(d.topic(wire.KindUpgrade))
	d.publish(d.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	if _, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{key}}}); err != nil {
		o.t.Fatal(err)
	}
	u, err := wire.DecodeUpgrade(d.next(wire.KindUpgrade))
	if err != nil {
		o.t.Fatal(err)
	}
	return u
}

// checkDownload downloads url as a device does: the first GET breaks off,
// the second resumes with Range and If-Range. With redirect the server
// answers 307 to the store, and a client that follows it gets the file.
func (o *otter) checkDownload(url string, image []byte, redirect bool) {
	o.t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(url)
	if err != nil {
		o.t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	switch {
	case redirect && (resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(loc, "X-Amz-Signature=")):
		o.t.Fatalf("download with --download-redirect: %s to %q, want 307 to a presigned store URL", resp.Status, loc)
	case !redirect && resp.StatusCode != http.StatusOK:
		o.t.Fatalf("proxied download: %s, want 200", resp.Status)
	}
	if bad := o.get(url[:len(url)-4]+"AAAA", nil); bad.StatusCode != http.StatusForbidden {
		o.t.Fatalf("download with a tampered otter URL: %s, want 403 before any redirect", bad.Status)
	}
	if hr, err := http.Head(url); err != nil || hr.StatusCode != http.StatusOK || hr.ContentLength != int64(len(image)) {
		o.t.Fatalf("HEAD: %v %v, want 200 with the file's length", hr, err)
	} else {
		hr.Body.Close()
	}
	first := o.get(url, nil)
	head := make([]byte, 3<<20)
	if _, err := io.ReadFull(first.Body, head); err != nil {
		o.t.Fatal(err)
	}
	first.Body.Close() // the connection breaks
	etag := first.Header.Get("ETag")
	rest := o.get(url, http.Header{"Range": {"bytes=" + strconv.Itoa(len(head)) + "-"}, "If-Range": {etag}})
	tail, err := io.ReadAll(rest.Body)
	rest.Body.Close()
	if err != nil || rest.StatusCode != http.StatusPartialContent || etag == "" || !bytes.Equal(append(head, tail...), image) {
		o.t.Fatalf("resumed download (ETag %q): %s, %d+%d bytes, not the firmware (%v)", etag, rest.Status, len(head), len(tail), err)
	}
	stale := o.get(url, http.Header{"Range": {"bytes=100-"}, "If-Range": {`"another-file"`}})
	all, _ := io.ReadAll(stale.Body)
	stale.Body.Close()
	if stale.StatusCode != http.StatusOK || !bytes.Equal(all, image) {
		o.t.Fatalf("resume with a stale If-Range: %s with %d bytes, want the whole file", stale.Status, len(all))
	}
}

func (o *otter) get(url string, h http.Header) *http.Response {
	o.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		o.t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	return resp
}

func TestS3UploadsLeaveNothingWhenRefused(t *testing.T) {
	srv := s3test.Start(t)
	o, bucket := startS3(t, srv, false)
	ctx := o.ctx()
	if _, err := o.api.CreateProduct(ctx, client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	image := bytes.Repeat([]byte("0123456789abcdef"), 12<<16) // 12 MiB: three parts
	_, err := o.api.UploadFirmware(ctx, client.FirmwareUpload{Product: "demo", Version: "2.0.0", Size: int64(len(image)),
		SHA256: strings.Repeat("ab", 32)}, bytes.NewReader(image))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != "mismatch" {
		t.Fatalf("upload with a wrong sha256: %v, want a mismatch", err)
	}
	if objs := srv.Objects(t, bucket); len(objs) != 0 {
		t.Fatalf("a refused upload left %v in the bucket", objs)
	}

	srv.Stop() // the bucket becomes unreachable
	_, err = o.api.UploadFirmware(ctx, client.FirmwareUpload{Product: "demo", Version: "2.0.1", Size: 10}, strings.NewReader("0123456789"))
	if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || !strings.Contains(ce.Detail, "s3://"+bucket+"/otter") {
		t.Fatalf("upload to an unreachable bucket: %v, want 503 naming the store", err)
	}
	if list, err := o.api.ListFirmware(ctx, client.FirmwareFilter{Product: "demo"}, client.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Fatalf("firmware after failed uploads: %v %v, want none", list, err)
	}
}

func TestServeRefusesUnusableS3Settings(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	gone := s3test.Start(t)
	gone.Stop()
	tests := []struct {
		name string
		cfg  server.Config
		want string
	}{
		{"SQLite", server.Config{Blob: srv.URL(bucket, "")}, "needs --db postgres://"},
		{"redirect without S3", server.Config{DownloadRedirect: true, DBURL: postgresURL(t)}, "--download-redirect needs --blob s3://"},
		{"unreachable bucket", server.Config{Blob: gone.URL("gone-bucket", ""), DBURL: postgresURL(t)}, "--blob: firmware storage s3://gone-bucket/"},
		{"missing bucket", server.Config{Blob: srv.URL("no-such-bucket", ""), DBURL: postgresURL(t)}, `bucket "no-such-bucket" does not exist`},
		{"no credentials", server.Config{Blob: srv.URL(bucket, ""), DBURL: postgresURL(t), Getenv: func(string) string { return "" }}, "AWS_ACCESS_KEY_ID"},
	}
	for _, tt := range tests {
		cfg := tt.cfg
		cfg.DataDir, cfg.HTTPAddr, cfg.MQTTAddr, cfg.Logger = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", slog.New(slog.DiscardHandler)
		if cfg.Getenv == nil {
			cfg.Getenv = srv.Getenv
		}
		s, err := server.Start(context.Background(), cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: otter started", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}
