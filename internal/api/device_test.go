package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

var secretRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestProductLifecycle(t *testing.T) {
	e := newEnv(t, 0)
	var p ota.Product
	e.ok(request{method: "POST", path: "/api/v1/products", token: e.admin,
		body: map[string]string{"key": "thermostat-v2", "name": "Thermostat", "description": "second generation"}}, 201, &p)
	if p.Key != "thermostat-v2" || p.Name != "Thermostat" || p.CreatedAt.IsZero() {
		t.Fatalf("created %+v", p)
	}
	var got ota.Product
	e.ok(request{method: "GET", path: "/api/v1/products/thermostat-v2", token: e.admin}, 200, &got)
	if diff := cmp.Diff(p, got); diff != "" {
		t.Fatalf("get differs from create (-create +get):\n%s", diff)
	}
	var d api.DeviceWithSecret
	e.ok(request{method: "POST", path: "/api/v1/products/thermostat-v2/devices", token: e.admin, body: map[string]string{"key": "d1"}}, 201, &d)
	e.fails(request{method: "DELETE", path: "/api/v1/products/thermostat-v2", token: e.admin}, 409, ota.ECONFLICT)
	e.ok(request{method: "DELETE", path: "/api/v1/products/thermostat-v2/devices/d1", token: e.admin}, 204, nil)
	e.ok(request{method: "DELETE", path: "/api/v1/products/thermostat-v2", token: e.admin}, 204, nil)
	e.fails(request{method: "GET", path: "/api/v1/products/thermostat-v2", token: e.admin}, 404, ota.ENOTFOUND)
}

func TestProductListPages(t *testing.T) {
	e := newEnv(t, 0)
	var want []string
	for i := range 7 {
		k := fmt.Sprintf("p%02d", i)
		e.product(k)
		want = append(want, k)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 7 {
			t.Fatal("paging does not end")
		}
		var page api.Page[ota.Product]
		e.ok(request{method: "GET", path: "/api/v1/products?limit=3&after=" + url.QueryEscape(after), token: e.admin}, 200, &page)
		for _, p := range page.Items {
			got = append(got, p.Key)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("products over pages (-want +got):\n%s", diff)
	}
}

func TestDeviceLifecycle(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	base := "/api/v1/products/demo/devices"
	var d api.DeviceWithSecret
	e.ok(request{method: "POST", path: base, token: e.admin,
		body: map[string]any{"key": "AA-BB-CC-00-11-22", "tags": map[string]string{"site": "paris"}}}, 201, &d)
	if !secretRE.MatchString(d.Secret) || d.Key != "AA-BB-CC-00-11-22" || d.Product != "demo" || d.Tags["site"] != "paris" {
		t.Fatalf("created %+v", d)
	}
	dev := base + "/" + url.PathEscape(d.Key)
	e.fails(request{method: "POST", path: base, token: e.admin, body: map[string]any{"key": d.Key}}, 409, ota.ECONFLICT)
	e.fails(request{method: "POST", path: base, token: e.admin, body: map[string]any{"key": "-bad"}}, 400, ota.EINVALID)
	e.fails(request{method: "POST", path: base, token: e.admin, body: map[string]any{"key": "d2", "tags": map[string]string{"a b": "c"}}}, 400, ota.EINVALID)
	e.fails(request{method: "POST", path: "/api/v1/products/nope/devices", token: e.admin, body: map[string]any{"key": "d2"}}, 404, ota.ENOTFOUND)

	var tagged ota.Device
	e.ok(request{method: "PUT", path: dev + "/tags", token: e.admin, body: map[string]any{"tags": map[string]string{"ring": "beta", "hw": "rev2"}}}, 200, &tagged)
	if diff := cmp.Diff(map[string]string{"ring": "beta", "hw": "rev2"}, tagged.Tags); diff != "" {
		t.Fatalf("tags after replace (-want +got):\n%s", diff)
	}
	e.fails(request{method: "PUT", path: dev + "/tags", token: e.admin, body: map[string]any{"tags": map[string]string{"ring": "a,b"}}}, 400, ota.EINVALID)

	var rotated api.DeviceWithSecret
	e.ok(request{method: "POST", path: dev + "/rotate-secret", token: e.admin}, 200, &rotated)
	if !secretRE.MatchString(rotated.Secret) || rotated.Secret == d.Secret {
		t.Fatalf("rotated secret %q (old %q)", rotated.Secret, d.Secret)
	}
	var got map[string]any
	e.ok(request{method: "GET", path: dev, token: e.admin}, 200, &got)
	if _, leaked := got["secret"]; leaked || got["key"] != d.Key {
		t.Fatalf("get device: %v", got)
	}
	e.ok(request{method: "DELETE", path: dev, token: e.admin}, 204, nil)
	e.fails(request{method: "GET", path: dev, token: e.admin}, 404, ota.ENOTFOUND)
	e.fails(request{method: "POST", path: dev + "/rotate-secret", token: e.admin}, 404, ota.ENOTFOUND)
}

// listKeys follows next through every page of a device list.
func (e *env) listKeys(query string, limit int) ([]string, int) {
	e.t.Helper()
	var keys []string
	after, pages := "", 0
	for {
		pages++
		if pages > 10_000 {
			e.t.Fatal("paging does not end")
		}
		var page api.Page[ota.Device]
		path := fmt.Sprintf("/api/v1/devices?%s&limit=%d&after=%s", query, limit, url.QueryEscape(after))
		e.ok(request{method: "GET", path: path, token: e.admin}, 200, &page)
		for _, d := range page.Items {
			keys = append(keys, d.Product+"/"+d.Key)
		}
		if page.Next == "" {
			return keys, pages
		}
		after = page.Next
	}
}

func TestDeviceListFilters(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	e.product("other")
	csv := "dev-01,site=paris,ring=beta\ndev-02,site=paris\ndev-03,site=lyon,ring=beta\nx-04,site=paris,ring=beta\n"
	e.ok(request{method: "POST", path: "/api/v1/products/demo/devices/import", token: e.admin, body: []byte(csv)}, 201, nil)
	e.ok(request{method: "POST", path: "/api/v1/products/other/devices/import", token: e.admin, body: []byte("dev-01,site=paris\n")}, 201, nil)
	// Versions arrive from devices; the store can record them at creation.
	e.product("versioned")
	_, err := e.st.CreateDevices(context.Background(), []store.NewDevice{
		{Product: "versioned", Key: "v1", SecretHash: credential.Hash("s1"), Versions: map[string]string{"default": "1.0.0", "modem": "2.0"}},
		{Product: "versioned", Key: "v2", SecretHash: credential.Hash("s2"), Versions: map[string]string{"default": "1.1.0"}},
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		query string
		want  []string
	}{
		{"product=demo", []string{"demo/dev-01", "demo/dev-02", "demo/dev-03", "demo/x-04"}},
		{"product=demo&tag=site=paris", []string{"demo/dev-01", "demo/dev-02", "demo/x-04"}},
		{"product=demo&tag=site=paris&tag=ring=beta", []string{"demo/dev-01", "demo/x-04"}},
		{"product=demo&prefix=dev-", []string{"demo/dev-01", "demo/dev-02", "demo/dev-03"}},
		{"tag=site=paris&prefix=dev-0", []string{"demo/dev-01", "demo/dev-02", "other/dev-01"}},
		{"product=demo&online=true", nil},
		{"product=other&online=false", []string{"other/dev-01"}},
		{"product=demo&version=1.0.0", nil},
		{"product=versioned&version=1.0.0", []string{"versioned/v1"}},
		{"product=versioned&module=default&version=1.1.0", []string{"versioned/v2"}},
		{"product=versioned&module=modem&version=2.0", []string{"versioned/v1"}},
		{"product=versioned&module=modem", []string{"versioned/v1"}},
		{"product=versioned&module=modem&version=1.0.0", nil},
		{"product=nope", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			e.t = t
			got, _ := e.listKeys(tt.query, 0)
			slices.Sort(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("devices (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeviceImport5000(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	var b strings.Builder
	b.WriteString("\ufeff# exported from the factory database\r\n\r\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "sn-%05d,batch=b%d,line=%d\r\n", i, i%7, i%3)
		if i%1000 == 0 {
			b.WriteString("   \n# a comment\n")
		}
	}
	var res api.ImportResult
	e.ok(request{method: "POST", path: "/api/v1/products/demo/devices/import", token: e.admin,
		body: strings.NewReader(b.String()), contentType: "text/csv"}, http.StatusCreated, &res)
	if res.Created != 5000 || len(res.Devices) != 5000 {
		t.Fatalf("created %d devices, %d listed", res.Created, len(res.Devices))
	}
	secrets := map[string]bool{}
	for i, d := range res.Devices {
		if d.Key != fmt.Sprintf("sn-%05d", i) || !secretRE.MatchString(d.Secret) || secrets[d.Secret] {
			t.Fatalf("device %d: %+v", i, d)
		}
		secrets[d.Secret] = true
	}
	keys, pages := e.listKeys("product=demo", 1000)
	if len(keys) != 5000 || pages != 5 {
		t.Fatalf("listed %d devices over %d pages, want 5000 over 5", len(keys), pages)
	}
	if n := len(slices.Compact(slices.Sorted(slices.Values(keys)))); n != 5000 {
		t.Fatalf("paging repeated devices: %d distinct", n)
	}
	tagged, _ := e.listKeys("product=demo&tag=batch=b3&tag=line=0", 1000)
	want := 0
	for i := range 5000 {
		if i%7 == 3 && i%3 == 0 {
			want++
		}
	}
	if len(tagged) != want {
		t.Fatalf("%d devices with batch=b3,line=0, want %d", len(tagged), want)
	}
	var d ota.Device
	e.ok(request{method: "GET", path: "/api/v1/products/demo/devices/sn-00042", token: e.admin}, 200, &d)
	if diff := cmp.Diff(map[string]string{"batch": "b0", "line": "0"}, d.Tags); diff != "" {
		t.Errorf("tags of sn-00042 (-want +got):\n%s", diff)
	}
}

func TestDeviceImportRefusesBadFile(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	good := "d1,site=paris\n# comment\n\nd2\n"
	tests := []struct {
		name   string
		body   string
		status int
		want   string // in the detail
	}{
		{"bad key", good + "bad key\n", 400, "line 5"},
		{"bad tag", good + "d3,site\n", 400, "line 5"},
		{"bad tag name", "d0\n" + good + "d3,s t=x\n", 400, "line 6"},
		{"duplicate tag", "d3,a=1,a=2\n", 400, "line 1"},
		{"duplicate key", good + "d1\n", 400, "first on line 1"},
		{"too long line", good + "d3,t=" + strings.Repeat("x", 20000) + "\n", 400, "line 5"},
		{"empty file", "# nothing\n\n", 400, "no devices"},
		{"quoted csv", "\"d1\",\"site=paris\"\n", 400, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			p := e.fails(request{method: "POST", path: "/api/v1/products/demo/devices/import", token: e.admin, body: []byte(tt.body)}, tt.status, ota.EINVALID)
			if !strings.Contains(p.Detail, tt.want) {
				t.Errorf("detail %q does not say %q", p.Detail, tt.want)
			}
			if keys, _ := e.listKeys("product=demo", 0); len(keys) != 0 {
				t.Errorf("devices created by a refused import: %v", keys)
			}
		})
	}
	e.t = t
	e.fails(request{method: "POST", path: "/api/v1/products/nope/devices/import", token: e.admin, body: []byte(good)}, 404, ota.ENOTFOUND)
}

func TestDeviceImportTooManyDevices(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	var b strings.Builder
	for i := range 100_001 {
		fmt.Fprintf(&b, "d%d\n", i)
	}
	p := e.fails(request{method: "POST", path: "/api/v1/products/demo/devices/import", token: e.admin, body: []byte(b.String())}, 413, ota.ETOOLARGE)
	if !strings.Contains(p.Detail, "100000") {
		t.Errorf("detail %q does not name the limit", p.Detail)
	}
}
