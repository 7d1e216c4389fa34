package cli_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/blob/s3test"
	"github.com/otter-ota/otter/internal/cli"
	"github.com/otter-ota/otter/internal/server"
)

// singleNode fills a single-node data folder (SQLite, files in blobs/)
// with firmware and stops its server, as an operator moving to a cluster
// would. It returns the files by version.
func singleNode(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := server.Start(ctx, server.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	api := client.New(s.HTTPURL(), s.AdminToken())
	if _, err := api.CreateProduct(ctx, client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"1.0.0": bytes.Repeat([]byte("a"), 6<<20), "1.1.0": []byte("small image")}
	for v, b := range files {
		if _, err := api.UploadFirmware(ctx, client.FirmwareUpload{Product: "demo", Version: v, Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestBlobMigrateCopiesVerifiesAndIsIdempotent(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	dir := t.TempDir()
	files := singleNode(t, dir)
	migrate := func() result {
		var stdout, stderr bytes.Buffer
		code := cli.Execute(t.Context(), []string{"blob", "migrate", "--data", dir, "--blob", srv.URL(bucket, "otter")},
			cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: srv.Getenv})
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}

	r0 := migrate()
	t.Log(r0.stdout)
	if r := r0; r.code != 0 || !strings.Contains(r.stdout, "2 copied, 0 already in the store, 0 replaced, 0 failed") {
		t.Fatalf("first migration: %s", r)
	}
	objs := srv.Objects(t, bucket)
	if len(objs) != 2 {
		t.Fatalf("bucket holds %v, want the two firmware files", objs)
	}
	var got [][]byte
	for _, o := range objs {
		got = append(got, srv.Content(t, bucket, o))
	}
	for v, b := range files {
		if !bytes.Equal(got[0], b) && !bytes.Equal(got[1], b) {
			t.Errorf("firmware %s is not in the bucket as uploaded", v)
		}
	}
	if r := migrate(); r.code != 0 || !strings.Contains(r.stdout, "0 copied, 2 already in the store") {
		t.Fatalf("second migration: %s", r)
	}

	// A file damaged on disk is refused, named, and not copied.
	if err := srv.Client(t).RemoveObject(t.Context(), bucket, objs[0], minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	damage(t, filepath.Join(dir, "blobs", strings.TrimPrefix(objs[0], "otter/")))
	r := migrate()
	if r.code != cli.ExitError || !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, "SHA-256") ||
		!strings.Contains(r.stdout, "0 copied, 1 already in the store, 0 replaced, 1 failed") {
		t.Fatalf("migration of a damaged file: %s", r)
	}
	if n := len(srv.Objects(t, bucket)); n != 1 {
		t.Fatalf("a damaged file was copied: the bucket holds %d objects", n)
	}
}

func damage(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBlobMigrateRefusesBadSettings(t *testing.T) {
	dir := t.TempDir()
	env := cli.Env{Stdout: &bytes.Buffer{}, Getenv: func(string) string { return "" }}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"blob", "migrate", "--data", dir}, cli.ExitUsage, "--blob: give the S3 store"},
		{[]string{"blob", "migrate", "--data", dir, "--blob", "s3://b/p"}, cli.ExitError, "holds no otter database"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		env.Stderr = &stderr
		if code := cli.Execute(t.Context(), tt.args, env); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("otter %s: exit %d, %q; want %d with %q", strings.Join(tt.args, " "), code, stderr.String(), tt.code, tt.want)
		}
	}
}
