package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/priority"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// env is one API server over a real store, blob folder and signer.
type env struct {
	t       *testing.T
	srv     *httptest.Server
	st      store.Store
	blobDir string
	reg     *prometheus.Registry
	admin   string // an admin token
	box     *credential.Box
}

func newEnv(t *testing.T, maxFirmware int64) *env {
	t.Helper()
	return newEnvWith(t, envOptions{maxFirmware: maxFirmware})
}

// envOptions changes what newEnvWith builds.
type envOptions struct {
	maxFirmware int64
	server      func(*http.Server)            // e.g. timeouts
	wrap        func(store.Store) store.Store // what the API sees of the store
	engine      func(store.Store) api.Engine  // the rollout engine, if any
	reads       *priority.Reads               // counts the reads in flight, if set
}

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, st: storetest.Open(t), blobDir: filepath.Join(t.TempDir(), "blobs"), reg: prometheus.NewRegistry()}
	blobs, err := blob.NewFS(e.blobDir)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signing.LoadOrCreate(filepath.Join(t.TempDir(), "signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	st := e.st
	if o.wrap != nil {
		st = o.wrap(st)
	}
	if e.box, err = signer.SecretBox(); err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{Store: st, Blobs: blobs, Signer: signer, Secrets: e.box, Metrics: e.reg, MaxFirmwareSize: o.maxFirmware, Reads: o.reads}
	if o.engine != nil {
		cfg.Engine = o.engine(e.st)
	}
	a, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(a.Handler())
	if o.server != nil {
		o.server(e.srv.Config)
	}
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	e.admin, err = api.BootstrapAdmin(context.Background(), e.st, "")
	if err != nil || e.admin == "" {
		t.Fatalf("bootstrap admin: %q %v", e.admin, err)
	}
	return e
}

// request is one call to the API.
type request struct {
	method, path, token string
	body                any    // JSON-encoded unless it is an io.Reader or []byte
	contentType         string // for raw bodies
}

// response is a read answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(r request) response {
	e.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case io.Reader:
		body = b
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		body, r.contentType = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(r.method, e.srv.URL+r.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// ok performs r, requires status want and decodes the answer into out.
func (e *env) ok(r request, want int, out any) {
	e.t.Helper()
	resp := e.do(r)
	if resp.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", r.method, r.path, resp.status, want, resp.body)
	}
	if out != nil {
		if err := json.Unmarshal(resp.body, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", r.method, r.path, resp.body, err)
		}
	}
}

// fails performs r and requires a problem with status and code; it returns
// the problem.
func (e *env) fails(r request, status int, code string) api.Problem {
	e.t.Helper()
	return e.checkProblem(r, e.do(r), status, code)
}

func (e *env) checkProblem(r request, resp response, status int, code string) api.Problem {
	e.t.Helper()
	if resp.status != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", r.method, r.path, resp.status, status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/problem+json" {
		e.t.Fatalf("%s %s: content type %q, want application/problem+json", r.method, r.path, ct)
	}
	var p api.Problem
	if err := json.Unmarshal(resp.body, &p); err != nil {
		e.t.Fatalf("%s %s: decode problem %s: %v", r.method, r.path, resp.body, err)
	}
	if p.Code != code || p.Status != status || p.Title != http.StatusText(status) || p.Type == "" || p.Detail == "" {
		e.t.Fatalf("%s %s: problem %+v, want status %d code %s and a detail", r.method, r.path, p, status, code)
	}
	return p
}

// token makes a token with role and returns its secret.
func (e *env) token(name string, role ota.Role) string {
	e.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	e.ok(request{method: "POST", path: "/api/v1/tokens", token: e.admin, body: map[string]any{"name": name, "role": role}}, http.StatusCreated, &out)
	return out.Token
}

func (e *env) product(key string) {
	e.t.Helper()
	e.ok(request{method: "POST", path: "/api/v1/products", token: e.admin, body: map[string]any{"key": key}}, http.StatusCreated, nil)
}

// blobFiles lists every file in the blob folder, temporary ones included.
func (e *env) blobFiles() []string {
	e.t.Helper()
	var out []string
	filepath.WalkDir(e.blobDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, e.blobDir))
		}
		return err
	})
	return out
}

// counterValue returns the value of the counter name with exactly labels.
func (e *env) counterValue(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
