package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (e *env) upload(query string, content []byte) response {
	e.t.Helper()
	return e.do(request{method: "POST", path: "/api/v1/firmware?" + query, token: e.admin, body: content, contentType: "application/octet-stream"})
}

func TestFirmwareUploadAndDownload(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	content := bytes.Repeat([]byte("otter firmware "), 10_000)
	r := request{method: "POST", token: e.admin, body: content,
		path: "/api/v1/firmware?product=demo&version=1.1.0&from=1.0.0,1.0.1&from=1.0.2&sha256=" + strings.ToUpper(sum(content)) +
			"&param=reboot=soft&param=url=http://x/?a=b&verify_required=true&description=fixes"}
	var f ota.Firmware
	e.ok(r, http.StatusCreated, &f)
	want := ota.Firmware{
		ID: f.ID, Product: "demo", Module: "default", Version: "1.1.0", Size: int64(len(content)), SHA256: sum(content),
		Signature: f.Signature, FromVersions: []string{"1.0.0", "1.0.1", "1.0.2"},
		Params: map[string]string{"reboot": "soft", "url": "http://x/?a=b"}, Description: "fixes", VerifyRequired: true,
		Status: ota.FirmwareActive, CreatedAt: f.CreatedAt,
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Fatalf("firmware (-want +got):\n%s", diff)
	}

	var key api.SigningKey
	e.ok(request{method: "GET", path: "/api/v1/signing-key", token: e.admin}, 200, &key)
	pub, err := base64.StdEncoding.DecodeString(key.PublicKey)
	if err != nil || key.Algorithm != "ed25519" || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("signing key %+v: %v", key, err)
	}
	m := wire.Manifest{Product: "demo", Module: "default", Version: "1.1.0", Size: int64(len(content)), SHA256: sum(content)}
	if !m.Verify(pub, f.Signature) {
		t.Fatal("the firmware signature does not verify with the published key")
	}

	var got ota.Firmware
	e.ok(request{method: "GET", path: "/api/v1/firmware/" + itoa(f.ID), token: e.admin}, 200, &got)
	if diff := cmp.Diff(f, got); diff != "" {
		t.Fatalf("get differs from upload (-upload +get):\n%s", diff)
	}

	file := e.do(request{method: "GET", path: "/api/v1/firmware/" + itoa(f.ID) + "/file", token: e.admin})
	if file.status != 200 || !bytes.Equal(file.body, content) || file.header.Get("ETag") != `"`+sum(content)+`"` {
		t.Fatalf("download: status %d, %d bytes, etag %q", file.status, len(file.body), file.header.Get("ETag"))
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/firmware/"+itoa(f.ID)+"/file", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Range", "bytes=100-")
	req.Header.Set("If-Range", `"`+sum(content)+`"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, content[100:]) {
		t.Fatalf("resume: status %d, %d bytes", resp.StatusCode, len(part))
	}
}

func TestFirmwareUploadRefusals(t *testing.T) {
	e := newEnv(t, 1000)
	e.product("demo")
	content := []byte("small firmware")
	if resp := e.upload("product=demo&version=1.0.0", content); resp.status != 201 {
		t.Fatalf("first upload: %d %s", resp.status, resp.body)
	}
	stored := e.blobFiles()
	if len(stored) != 1 {
		t.Fatalf("blob files after one upload: %v", stored)
	}
	tests := []struct {
		name   string
		query  string
		body   io.Reader
		status int
		code   string
	}{
		{"duplicate version", "product=demo&version=1.0.0", bytes.NewReader([]byte("other")), 409, ota.ECONFLICT},
		{"duplicate version, shorter", "product=demo&version=1.0", bytes.NewReader([]byte("other")), 409, ota.ECONFLICT},
		{"same version spelt with v", "product=demo&version=v1.0.0&module=default", bytes.NewReader([]byte("other")), 409, ota.ECONFLICT},
		{"over the limit, length known", "product=demo&version=2.0.0", bytes.NewReader(make([]byte, 1001)), 413, ota.ETOOLARGE},
		{"over the limit, chunked", "product=demo&version=2.0.0", io.MultiReader(bytes.NewReader(make([]byte, 600)), bytes.NewReader(make([]byte, 600))), 413, ota.ETOOLARGE},
		{"wrong sha256", "product=demo&version=2.0.0&sha256=" + sum([]byte("something else")), bytes.NewReader(content), 422, ota.EMISMATCH},
		{"malformed sha256", "product=demo&version=2.0.0&sha256=abc", bytes.NewReader(content), 400, ota.EINVALID},
		{"bad version", "product=demo&version=1..0", bytes.NewReader(content), 400, ota.EINVALID},
		{"opaque version without from", "product=demo&version=build-77", bytes.NewReader(content), 400, ota.EINVALID},
		{"from is own version", "product=demo&version=2.0.0&from=2.0.0", bytes.NewReader(content), 400, ota.EINVALID},
		{"downgrade not allowed", "product=demo&version=2.0.0&from=3.0.0", bytes.NewReader(content), 400, ota.EINVALID},
		{"missing version", "product=demo", bytes.NewReader(content), 400, ota.EINVALID},
		{"bad module", "product=demo&version=2.0.0&module=Modem!", bytes.NewReader(content), 400, ota.EINVALID},
		{"bad param", "product=demo&version=2.0.0&param=novalue", bytes.NewReader(content), 400, ota.EINVALID},
		{"bad bool", "product=demo&version=2.0.0&verify_required=perhaps", bytes.NewReader(content), 400, ota.EINVALID},
		{"misspelt parameter", "product=demo&versoin=2.0.0&version=2.0.0", bytes.NewReader(content), 400, ota.EINVALID},
		{"empty body", "product=demo&version=2.0.0", bytes.NewReader(nil), 400, ota.EINVALID},
		{"unknown product", "product=nope&version=2.0.0", bytes.NewReader(content), 404, ota.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			r := request{method: "POST", path: "/api/v1/firmware?" + tt.query, token: e.admin, body: tt.body}
			e.checkProblem(r, e.do(r), tt.status, tt.code)
			if diff := cmp.Diff(stored, e.blobFiles()); diff != "" {
				t.Errorf("blob folder changed by a refused upload (-before +after):\n%s", diff)
			}
		})
	}
	e.t = t
	var page api.Page[ota.Firmware]
	e.ok(request{method: "GET", path: "/api/v1/firmware?product=demo", token: e.admin}, 200, &page)
	if len(page.Items) != 1 {
		t.Fatalf("firmware after refusals: %+v", page.Items)
	}
	var down ota.Firmware
	e.ok(request{method: "POST", path: "/api/v1/firmware?product=demo&version=2.0.0&from=3.0.0&allow_downgrade=true",
		token: e.admin, body: content}, 201, &down)
	e.ok(request{method: "GET", path: "/api/v1/firmware/" + itoa(down.ID), token: e.admin}, 200, &down)
	if !down.AllowDowngrade {
		t.Error("allow_downgrade=true was not kept")
	}
}

func TestFirmwareListAndDelete(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	for _, q := range []string{"version=1.0.0", "version=1.1.0", "module=modem&version=5.0"} {
		if resp := e.upload("product=demo&"+q, []byte(q)); resp.status != 201 {
			t.Fatalf("upload %s: %d %s", q, resp.status, resp.body)
		}
	}
	var page api.Page[ota.Firmware]
	e.ok(request{method: "GET", path: "/api/v1/firmware?product=demo&module=default", token: e.admin}, 200, &page)
	if len(page.Items) != 2 {
		t.Fatalf("default firmware: %+v", page.Items)
	}
	e.fails(request{method: "DELETE", path: "/api/v1/products/demo", token: e.admin}, 409, ota.ECONFLICT)
	id := itoa(page.Items[0].ID)
	e.ok(request{method: "DELETE", path: "/api/v1/firmware/" + id, token: e.admin}, 204, nil)
	e.fails(request{method: "GET", path: "/api/v1/firmware/" + id, token: e.admin}, 404, ota.ENOTFOUND)
	e.fails(request{method: "GET", path: "/api/v1/firmware/" + id + "/file", token: e.admin}, 404, ota.ENOTFOUND)
	if files := e.blobFiles(); len(files) != 2 {
		t.Fatalf("blob files after one of three deleted: %v", files)
	}
}

// slowReader sends its content in small pieces with pauses, like a large
// upload over a slow link.
type slowReader struct {
	left  []byte
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.left) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p[:min(len(p), 100)], r.left)
	r.left = r.left[n:]
	return n, nil
}

// TestUploadOutlastsServerTimeouts checks that an upload may take longer
// than the read and write timeouts the server sets for JSON calls.
func TestUploadOutlastsServerTimeouts(t *testing.T) {
	e := newEnvWith(t, envOptions{server: func(s *http.Server) {
		s.ReadTimeout, s.WriteTimeout = 150*time.Millisecond, 150*time.Millisecond
	}})
	e.product("demo")
	content := bytes.Repeat([]byte("x"), 1000)
	var f ota.Firmware
	e.ok(request{method: "POST", path: "/api/v1/firmware?product=demo&version=1.0.0", token: e.admin,
		body: &slowReader{left: content, pause: 40 * time.Millisecond}}, 201, &f)
	if f.Size != 1000 {
		t.Fatalf("stored %d bytes, want 1000", f.Size)
	}
}

// blindStore hides existing firmware from lists, so that an upload passes
// the early duplicate check as it does when two uploads race, and the
// database's unique key is what refuses it.
type blindStore struct{ store.Store }

func (blindStore) ListFirmware(context.Context, store.FirmwareFilter, store.Page) ([]ota.Firmware, string, error) {
	return nil, "", nil
}

func TestFirmwareInsertConflictRemovesFile(t *testing.T) {
	e := newEnvWith(t, envOptions{wrap: func(s store.Store) store.Store { return blindStore{s} }})
	e.product("demo")
	if resp := e.upload("product=demo&version=1.0.0", []byte("one")); resp.status != 201 {
		t.Fatalf("first upload: %d %s", resp.status, resp.body)
	}
	before := e.blobFiles()
	r := request{method: "POST", path: "/api/v1/firmware?product=demo&version=1.0.0", token: e.admin, body: []byte("two")}
	e.fails(r, 409, ota.ECONFLICT)
	if diff := cmp.Diff(before, e.blobFiles()); diff != "" {
		t.Fatalf("the refused upload left a file (-before +after):\n%s", diff)
	}
}
