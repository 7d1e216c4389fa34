// Package s3test runs a real S3 server for tests: versitygw (Apache-2.0)
// serving a temporary folder, each sub-folder a bucket. Install it with
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// Tests that need it skip when the binary is missing, unless CI=true or
// OTTER_TEST_S3=1, where a missing server fails the test loudly.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/otter-ota/otter/internal/blob"
)

// Binary is the name of the S3 server's executable.
const Binary = "versitygw"

// Server is a running versitygw.
type Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:port.
	Endpoint  string
	AccessKey string
	SecretKey string
	// Dir is the folder served; each sub-folder is a bucket.
	Dir  string
	stop func()
}

// Stop stops the server before the test ends, to test an unreachable
// store; stopping twice is harmless.
func (s *Server) Stop() { s.stop() }

// Required reports whether a missing S3 server fails tests rather than
// skipping them: in CI, or when asked with OTTER_TEST_S3=1.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("OTTER_TEST_S3") == "1"
}

// Start runs versitygw on a free port over a fresh folder and stops it when
// the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := find()
	if err != nil {
		if Required() {
			tb.Fatalf("S3 tests are required here (CI=true or OTTER_TEST_S3=1) but %v", err)
		}
		tb.Skipf("no S3 server: %v", err)
	}
	s := &Server{AccessKey: "otter-test", SecretKey: randomHex(tb), Dir: tb.TempDir()}
	var last error
	for range 3 { // a free port can be taken between asking and binding
		if last = s.start(tb, bin); last == nil {
			return s
		}
	}
	tb.Fatalf("start %s: %v", bin, last)
	return nil
}

// find looks for the binary in PATH, then in $(go env GOPATH)/bin.
func find() (string, error) {
	if p, err := exec.LookPath(Binary); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", Binary)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is neither in PATH nor in $(go env GOPATH)/bin: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0", Binary)
}

func (s *Server) start(tb testing.TB, bin string) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	logPath := filepath.Join(tb.TempDir(), "versitygw.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey, "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive a killed test binary
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.Endpoint = "http://" + addr
	if err := s.wait(exited); err != nil {
		cmd.Process.Kill()
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w; its output:\n%s", err, log)
	}
	s.stop = sync.OnceFunc(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	tb.Cleanup(s.stop)
	return nil
}

// wait polls until the server answers HTTP, it exits, or 20 s pass.
func (s *Server) wait(exited <-chan error) error {
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("versitygw exited at start: %v", err)
		default:
		}
		if resp, err := client.Get(s.Endpoint + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("versitygw did not answer within 20 s")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Bucket creates a new, empty bucket and returns its name.
func (s *Server) Bucket(tb testing.TB) string {
	tb.Helper()
	name := "otter-" + randomHex(tb)[:12]
	if err := s.Client(tb).MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		tb.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Client returns a plain minio-go client of the server, for looking at
// what a test left in a bucket.
func (s *Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	u, _ := url.Parse(s.Endpoint)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// URL returns the --blob URL of prefix in bucket.
func (s *Server) URL(bucket, prefix string) string {
	return "s3://" + bucket + "/" + prefix + "?endpoint=" + url.QueryEscape(s.Endpoint) + "&region=us-east-1"
}

// Getenv answers the AWS credential variables with the server's keys, for
// blob.Open and the CLI.
func (s *Server) Getenv(name string) string {
	switch name {
	case "AWS_ACCESS_KEY_ID":
		return s.AccessKey
	case "AWS_SECRET_ACCESS_KEY":
		return s.SecretKey
	}
	return ""
}

// Store returns an S3 store over prefix in bucket with the given part size
// (0 for the default).
func (s *Server) Store(tb testing.TB, bucket, prefix string, partSize int64) *blob.S3 {
	tb.Helper()
	cfg, err := blob.ParseS3URL(s.URL(bucket, prefix), s.Getenv)
	if err != nil {
		tb.Fatal(err)
	}
	if partSize != 0 {
		cfg.PartSize = partSize
	}
	st, err := blob.NewS3(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// Objects lists every object in bucket, and every unfinished multipart
// upload as "upload:" + its key, so a test can assert nothing was left.
func (s *Server) Objects(tb testing.TB, bucket string) []string {
	tb.Helper()
	ctx := context.Background()
	c := s.Client(tb)
	var out []string
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			tb.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	for u := range c.ListIncompleteUploads(ctx, bucket, "", true) {
		if u.Err != nil {
			tb.Fatal(u.Err)
		}
		out = append(out, "upload:"+u.Key)
	}
	return out
}

// Content reads a whole object.
func (s *Server) Content(tb testing.TB, bucket, key string) []byte {
	tb.Helper()
	o, err := s.Client(tb).GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	defer o.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(o); err != nil {
		tb.Fatalf("read %s: %v", key, err)
	}
	return b.Bytes()
}

func randomHex(tb testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}
