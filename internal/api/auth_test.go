package api_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func TestAuthorization(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	viewer := e.token("dashboard", ota.RoleViewer)
	operator := e.token("ci", ota.RoleOperator)
	revoked := e.token("old", ota.RoleAdmin)
	var toks struct{ Items []ota.Token }
	e.ok(request{method: "GET", path: "/api/v1/tokens", token: e.admin}, 200, &toks)
	for _, tok := range toks.Items {
		if tok.Name == "old" {
			e.ok(request{method: "DELETE", path: "/api/v1/tokens/" + itoa(tok.ID), token: e.admin}, http.StatusNoContent, nil)
		}
	}

	tests := []struct {
		name   string
		req    request
		status int
		code   string
	}{
		{"no token", request{method: "GET", path: "/api/v1/products"}, 401, ota.EUNAUTHORIZED},
		{"unknown token", request{method: "GET", path: "/api/v1/products", token: "otr_nobody"}, 401, ota.EUNAUTHORIZED},
		{"revoked token", request{method: "GET", path: "/api/v1/products", token: revoked}, 401, ota.EUNAUTHORIZED},
		{"viewer creates product", request{method: "POST", path: "/api/v1/products", token: viewer, body: map[string]string{"key": "x"}}, 403, ota.EFORBIDDEN},
		{"viewer deletes product", request{method: "DELETE", path: "/api/v1/products/demo", token: viewer}, 403, ota.EFORBIDDEN},
		{"viewer uploads firmware", request{method: "POST", path: "/api/v1/firmware?product=demo&version=1.0.0", token: viewer, body: []byte("x")}, 403, ota.EFORBIDDEN},
		{"viewer imports devices", request{method: "POST", path: "/api/v1/products/demo/devices/import", token: viewer, body: []byte("d1")}, 403, ota.EFORBIDDEN},
		{"operator creates token", request{method: "POST", path: "/api/v1/tokens", token: operator, body: map[string]string{"name": "x", "role": "admin"}}, 403, ota.EFORBIDDEN},
		{"operator lists tokens", request{method: "GET", path: "/api/v1/tokens", token: operator}, 403, ota.EFORBIDDEN},
		{"no token on upload", request{method: "POST", path: "/api/v1/firmware?product=demo&version=1.0.0", body: []byte("x")}, 401, ota.EUNAUTHORIZED},
		{"no token on download", request{method: "GET", path: "/api/v1/firmware/1/file"}, 401, ota.EUNAUTHORIZED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			e.fails(tt.req, tt.status, tt.code)
		})
	}
	e.t = t

	resp := e.do(request{method: "GET", path: "/api/v1/products"})
	if !strings.HasPrefix(resp.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: Bearer: %v", resp.header)
	}
	// What each role may do, it does.
	e.ok(request{method: "GET", path: "/api/v1/products", token: viewer}, 200, nil)
	e.ok(request{method: "POST", path: "/api/v1/products", token: operator, body: map[string]string{"key": "other"}}, 201, nil)
	e.ok(request{method: "GET", path: "/api/v1/tokens", token: e.admin}, 200, nil)
}

func TestMalformedAuthorization(t *testing.T) {
	e := newEnv(t, 0)
	for _, h := range []string{"Basic abc", "Bearer", "Bearer ", e.admin} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/products", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %q: status %d, want 401", h, resp.StatusCode)
		}
	}
}

func TestEventsRecordTokenName(t *testing.T) {
	e := newEnv(t, 0)
	ci := e.token("ci", ota.RoleOperator)
	e.ok(request{method: "POST", path: "/api/v1/products", token: ci, body: map[string]string{"key": "demo"}}, 201, nil)
	var page struct{ Items []ota.Event }
	e.ok(request{method: "GET", path: "/api/v1/events?kind=product&actor=ci", token: ci}, 200, &page)
	if len(page.Items) != 1 || page.Items[0].Product != "demo" || page.Items[0].Actor != "ci" {
		t.Fatalf("events by ci: %+v", page.Items)
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t, 0)
	var made api.TokenWithSecret
	e.ok(request{method: "POST", path: "/api/v1/tokens", token: e.admin, body: map[string]string{"name": "ci", "role": "viewer"}}, 201, &made)
	if !strings.HasPrefix(made.Secret, "otr_") || len(made.Secret) != 47 || made.Role != ota.RoleViewer || made.ID == 0 {
		t.Fatalf("new token: %+v", made)
	}
	e.ok(request{method: "GET", path: "/api/v1/products", token: made.Secret}, 200, nil)
	e.fails(request{method: "POST", path: "/api/v1/tokens", token: e.admin, body: map[string]string{"name": "x", "role": "root"}}, 422, ota.EINVALID)
	e.fails(request{method: "POST", path: "/api/v1/tokens", token: e.admin, body: map[string]string{"name": "two words", "role": "admin"}}, 400, ota.EINVALID)
	e.ok(request{method: "DELETE", path: "/api/v1/tokens/" + itoa(made.ID), token: e.admin}, 204, nil)
	e.fails(request{method: "GET", path: "/api/v1/products", token: made.Secret}, 401, ota.EUNAUTHORIZED)
}

func TestBootstrapAdmin(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	if _, err := api.BootstrapAdmin(ctx, st, "short"); err == nil {
		t.Fatal("a 5-character fixed admin token was accepted")
	}
	fixed := "a-fixed-admin-token-for-tests"
	got, err := api.BootstrapAdmin(ctx, st, fixed)
	if err != nil || got != fixed {
		t.Fatalf("first start: %q %v, want the fixed token", got, err)
	}
	got, err = api.BootstrapAdmin(ctx, st, "")
	if err != nil || got != "" {
		t.Fatalf("second start: %q %v, want nothing new", got, err)
	}
	if n, err := st.CountTokens(ctx); err != nil || n != 1 {
		t.Fatalf("%d tokens, %v; want 1", n, err)
	}

	st2 := storetest.Open(t)
	random, err := api.BootstrapAdmin(ctx, st2, "")
	if err != nil || !strings.HasPrefix(random, "otr_") {
		t.Fatalf("random admin token: %q %v", random, err)
	}

	// Every token revoked: the next start makes a new admin under a free
	// name, since "admin" stays the revoked token's.
	tok, err := st2.TokenByHash(ctx, credential.Hash(random))
	if err != nil {
		t.Fatal(err)
	}
	if err := st2.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	again, err := api.BootstrapAdmin(ctx, st2, "")
	if err != nil || again == "" {
		t.Fatalf("start with every token revoked: %q %v, want a new admin token", again, err)
	}
	if tok, err := st2.TokenByHash(ctx, credential.Hash(again)); err != nil || tok.Name != "admin-2" || tok.Role != ota.RoleAdmin {
		t.Fatalf("new admin token %+v %v, want admin-2", tok, err)
	}
}

// TestProblems checks that every kind of error, from our handlers, huma's
// validation and the router, is problem+json with a code.
func TestProblems(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	tests := []struct {
		name   string
		req    request
		status int
		code   string
	}{
		{"unknown route", request{method: "GET", path: "/api/v1/nothing", token: e.admin}, 404, ota.ENOTFOUND},
		{"outside the prefix", request{method: "GET", path: "/elsewhere", token: e.admin}, 404, ota.ENOTFOUND},
		{"method not allowed", request{method: "PATCH", path: "/api/v1/products", token: e.admin}, 405, ota.EINVALID},
		{"missing product", request{method: "GET", path: "/api/v1/products/nope", token: e.admin}, 404, ota.ENOTFOUND},
		{"bad product key", request{method: "POST", path: "/api/v1/products", token: e.admin, body: map[string]string{"key": "Bad Key"}}, 400, ota.EINVALID},
		{"duplicate product", request{method: "POST", path: "/api/v1/products", token: e.admin, body: map[string]string{"key": "demo"}}, 409, ota.ECONFLICT},
		{"unknown body field", request{method: "POST", path: "/api/v1/products", token: e.admin, body: map[string]string{"key": "x", "colour": "red"}}, 422, ota.EINVALID},
		{"not json", request{method: "POST", path: "/api/v1/products", token: e.admin, body: []byte("{"), contentType: "application/json"}, 400, ota.EINVALID},
		{"negative limit", request{method: "GET", path: "/api/v1/products?limit=-1", token: e.admin}, 422, ota.EINVALID},
		{"bad cursor", request{method: "GET", path: "/api/v1/products?after=%25%25", token: e.admin}, 400, ota.EINVALID},
		{"bad firmware id", request{method: "GET", path: "/api/v1/firmware/abc", token: e.admin}, 422, ota.EINVALID},
		{"bad firmware file id", request{method: "GET", path: "/api/v1/firmware/abc/file", token: e.admin}, 400, ota.EINVALID},
		{"missing firmware file", request{method: "GET", path: "/api/v1/firmware/99/file", token: e.admin}, 404, ota.ENOTFOUND},
		{"bad since", request{method: "GET", path: "/api/v1/events?since=yesterday", token: e.admin}, 422, ota.EINVALID},
		{"bad tag filter", request{method: "GET", path: "/api/v1/devices?tag=site", token: e.admin}, 400, ota.EINVALID},
		{"bad online filter", request{method: "GET", path: "/api/v1/devices?online=maybe", token: e.admin}, 422, ota.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			e.fails(tt.req, tt.status, tt.code)
		})
	}
}

func TestProblemBodyHasDetails(t *testing.T) {
	e := newEnv(t, 0)
	e.product("demo")
	csv := []byte("d1\nd2\n")
	e.ok(request{method: "POST", path: "/api/v1/products/demo/devices/import", token: e.admin, body: bytes.NewReader(csv)}, 201, nil)
	p := e.fails(request{method: "POST", path: "/api/v1/products/demo/devices/import", token: e.admin, body: []byte("d0\nd2\nd1\n")}, 409, ota.ECONFLICT)
	if strings.Join(p.Details, ",") != "d1,d2" && strings.Join(p.Details, ",") != "d2,d1" {
		t.Fatalf("conflict details %v, want the duplicate keys d1 and d2", p.Details)
	}
}
