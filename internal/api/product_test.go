package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
)

// A product's protocol is set at creation and changed by PATCH; the devices
// of an EnOS product get their secret sealed (and openable with the
// server's key), those of other products only a hash; a device created
// before the switch gets one when its secret is rotated.
func TestProductProtocolAndSealedSecrets(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	var p ota.Product
	e.ok(request{method: "POST", path: "/api/v1/products", token: e.admin, body: map[string]any{"key": "en", "protocol": "enos"}}, http.StatusCreated, &p)
	if p.Protocol != ota.ProtocolEnOS {
		t.Fatalf("created product protocol %q, want enos", p.Protocol)
	}
	e.product("ot")
	e.ok(request{method: "GET", path: "/api/v1/products/ot", token: e.admin}, http.StatusOK, &p)
	if p.Protocol != ota.ProtocolOtter {
		t.Fatalf("default protocol %q, want otter", p.Protocol)
	}
	e.fails(request{method: "POST", path: "/api/v1/products", token: e.admin, body: map[string]any{"key": "x", "protocol": "mqtt"}}, http.StatusUnprocessableEntity, ota.EINVALID)

	var dev struct{ Secret string }
	e.ok(request{method: "POST", path: "/api/v1/products/en/devices", token: e.admin, body: map[string]any{"key": "d1"}}, http.StatusCreated, &dev)
	creds, err := e.st.Credentials(ctx, "en", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.box.Open("en", "d1", creds.SealedSecret); err != nil || got != dev.Secret {
		t.Fatalf("sealed secret opens to %q, %v; want the secret shown at creation", got, err)
	}
	e.ok(request{method: "POST", path: "/api/v1/products/ot/devices", token: e.admin, body: map[string]any{"key": "d2"}}, http.StatusCreated, &dev)
	if creds, _ := e.st.Credentials(ctx, "ot", "d2"); creds.SealedSecret != nil || creds.Protocol != ota.ProtocolOtter {
		t.Fatalf("otter product's device: protocol %q, sealed %x; want otter, none", creds.Protocol, creds.SealedSecret)
	}

	e.ok(request{method: "PATCH", path: "/api/v1/products/ot", token: e.admin, body: map[string]any{"protocol": "enos", "name": "Old fleet"}}, http.StatusOK, &p)
	if p.Protocol != ota.ProtocolEnOS || p.Name != "Old fleet" {
		t.Fatalf("after PATCH: %+v", p)
	}
	if creds, _ := e.st.Credentials(ctx, "ot", "d2"); creds.SealedSecret != nil {
		t.Fatal("a device created before the switch has a sealed secret without a rotation")
	}
	e.ok(request{method: "POST", path: "/api/v1/products/ot/devices/d2/rotate-secret", token: e.admin}, http.StatusOK, &dev)
	creds, _ = e.st.Credentials(ctx, "ot", "d2")
	if got, err := e.box.Open("ot", "d2", creds.SealedSecret); err != nil || got != dev.Secret {
		t.Fatalf("after rotation the sealed secret opens to %q, %v; want the new secret", got, err)
	}
	e.ok(request{method: "PATCH", path: "/api/v1/products/ot", token: e.admin, body: map[string]any{"protocol": "otter"}}, http.StatusOK, &p)
	if creds, _ := e.st.Credentials(ctx, "ot", "d2"); creds.SealedSecret != nil {
		t.Fatal("switched back to otter, the product keeps sealed secrets")
	}
	viewer := e.token("v", ota.RoleViewer)
	e.fails(request{method: "PATCH", path: "/api/v1/products/ot", token: viewer, body: map[string]any{"protocol": "enos"}}, http.StatusForbidden, ota.EFORBIDDEN)
	e.fails(request{method: "PATCH", path: "/api/v1/products/ghost", token: e.admin, body: map[string]any{"protocol": "enos"}}, http.StatusNotFound, ota.ENOTFOUND)
}
