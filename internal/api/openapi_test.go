package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
)

func TestOpenAPIDocument(t *testing.T) {
	e := newEnv(t, 0)
	resp := e.do(request{method: "GET", path: "/api/v1/openapi.json"}) // no token needed
	if resp.status != 200 {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Comps   struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	routes := []string{
		"get /api/v1/signing-key",
		"post /api/v1/products", "get /api/v1/products", "get /api/v1/products/{product}", "delete /api/v1/products/{product}",
		"post /api/v1/products/{product}/devices", "post /api/v1/products/{product}/devices/import", "get /api/v1/devices",
		"get /api/v1/products/{product}/devices/{device}", "put /api/v1/products/{product}/devices/{device}/tags",
		"post /api/v1/products/{product}/devices/{device}/rotate-secret", "delete /api/v1/products/{product}/devices/{device}",
		"post /api/v1/firmware", "get /api/v1/firmware", "get /api/v1/firmware/{id}", "get /api/v1/firmware/{id}/file",
		"delete /api/v1/firmware/{id}",
		"post /api/v1/tokens", "get /api/v1/tokens", "delete /api/v1/tokens/{id}",
		"get /api/v1/events",
		"post /api/v1/tasks", "get /api/v1/tasks", "get /api/v1/tasks/{id}", "get /api/v1/tasks/{id}/jobs",
		"get /api/v1/jobs/{id}", "get /api/v1/products/{product}/devices/{device}/jobs",
		"post /api/v1/tasks/{id}/pause", "post /api/v1/tasks/{id}/resume", "post /api/v1/tasks/{id}/cancel",
		"post /api/v1/tasks/{id}/advance", "post /api/v1/tasks/{id}/retry-failed",
	}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		op, ok := doc.Paths[path][method]
		if !ok {
			t.Errorf("document lacks %s", r)
			continue
		}
		if !bytes.Contains(op, []byte(`"security"`)) || !bytes.Contains(op, []byte("Requires the `")) {
			t.Errorf("%s does not document its security and role", r)
		}
		if !bytes.Contains(op, []byte(`#/components/schemas/Problem`)) {
			t.Errorf("%s does not document its problem responses", r)
		}
	}
	if _, ok := doc.Comps.Schemas["Problem"].Properties["code"]; !ok {
		t.Error("the Problem schema has no code property")
	}
	if bytes.Contains(resp.body, []byte("ErrorModel")) {
		t.Error("the document still refers to huma's ErrorModel")
	}
	create := string(doc.Paths["/api/v1/tasks"]["post"])
	for _, ref := range []string{`"201"`, `#/components/schemas/Task"`, `"200"`, `#/components/schemas/TaskPreview"`} {
		if !strings.Contains(create, ref) {
			t.Errorf("create-task does not document %s: %s", ref, create)
		}
	}
	if _, ok := doc.Comps.Schemas["Policy"].Properties["retry_backoff"]; !ok {
		t.Error("the Policy schema lacks retry_backoff")
	}
	if _, ok := doc.Comps.Schemas["Firmware"].Properties["sha256"]; !ok {
		t.Error("the Firmware schema lacks sha256")
	}
}

func TestMetricsByRoutePattern(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	for _, k := range []string{"a", "b", "c"} {
		e.ok(request{method: "POST", path: "/api/v1/products/demo/devices", token: e.admin, body: map[string]string{"key": k}}, 201, nil)
		e.ok(request{method: "GET", path: "/api/v1/products/demo/devices/" + k, token: e.admin}, 200, nil)
	}
	e.do(request{method: "GET", path: "/api/v1/products/demo/devices/zz", token: e.admin})
	e.do(request{method: "GET", path: "/api/v1/no/such/thing/42"})

	count := func(method, route, status string) float64 {
		return e.counterValue("otter_api_requests_total", map[string]string{"method": method, "route": route, "status": status})
	}
	if n := count("GET", "/api/v1/products/{product}/devices/{device}", "200"); n != 3 {
		t.Errorf("%v device reads with 200, want 3", n)
	}
	if n := count("GET", "/api/v1/products/{product}/devices/{device}", "404"); n != 1 {
		t.Errorf("%v device reads with 404, want 1", n)
	}
	if n := count("GET", "unmatched", "404"); n != 1 {
		t.Errorf("%v unmatched requests, want 1", n)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "/demo") || strings.HasSuffix(l.GetValue(), "/a") {
					t.Errorf("metric %s has a label with a concrete key: %s", mf.GetName(), l.GetValue())
				}
			}
		}
	}
}

// TestFirmwareConcurrentDuplicates uploads one version from many clients at
// once: one wins, every other gets 409, and only the winner's file is kept,
// whichever check (before the upload or at the insert) refused the others.
func TestFirmwareConcurrentDuplicates(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	content := bytes.Repeat([]byte{7}, 1<<20)
	statuses := make([]int, 8)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/firmware?product=demo&version=3.0.0", bytes.NewReader(content))
			req.Header.Set("Authorization", "Bearer "+e.admin)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	created := 0
	for _, s := range statuses {
		switch s {
		case 201:
			created++
		case 409:
		default:
			t.Errorf("status %d, want 201 or 409", s)
		}
	}
	if created != 1 {
		t.Errorf("%d uploads created the version, want 1 (%v)", created, statuses)
	}
	if files := e.blobFiles(); len(files) != 1 {
		t.Errorf("blob files: %v, want only the winner's", files)
	}
	var page struct{ Items []ota.Firmware }
	e.ok(request{method: "GET", path: "/api/v1/firmware", token: e.admin}, 200, &page)
	if len(page.Items) != 1 {
		t.Errorf("firmware: %+v", page.Items)
	}
}
