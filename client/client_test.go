package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/sdk/wire"
)

var hexSecret = regexp.MustCompile(`^[0-9a-f]{64}$`)

// wantError checks that err is a *client.Error with the given status and
// code whose message contains text.
func wantError(t *testing.T, err error, status int, code, text string) *client.Error {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want *client.Error %d %s", err, err, status, code)
	}
	if ce.Status != status || ce.Code != code || !strings.Contains(ce.Error(), text) {
		t.Fatalf("error = %q (status %d, code %q), want status %d, code %q, containing %q", ce.Error(), ce.Status, ce.Code, status, code, text)
	}
	return ce
}

func TestProducts(t *testing.T) {
	s := startServer(t)
	c, ctx := s.admin, ctx(t)

	p, err := c.CreateProduct(ctx, client.ProductCreate{Key: "demo", Name: "Demo board", Description: "for tests"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Key != "demo" || p.Name != "Demo board" || p.CreatedAt.IsZero() {
		t.Errorf("created %+v", p)
	}
	_, err = c.CreateProduct(ctx, client.ProductCreate{Key: "demo"})
	wantError(t, err, 409, client.CodeConflict, "demo")
	_, err = c.CreateProduct(ctx, client.ProductCreate{Key: "Bad Key"})
	wantError(t, err, 400, client.CodeInvalid, `"Bad Key"`)

	got, err := c.Product(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("Product (-created +got):\n%s", diff)
	}
	for _, k := range []string{"p1", "p2", "p3"} {
		if _, err := c.CreateProduct(ctx, client.ProductCreate{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.ListProducts(ctx, client.ListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 || page.Next == "" {
		t.Errorf("first page of 2: %d items, next %q", len(page.Items), page.Next)
	}
	if keys := productKeys(t, c.AllProducts(ctx, client.ListOptions{Limit: 1})); !slices.Equal(keys, []string{"demo", "p1", "p2", "p3"}) {
		t.Errorf("AllProducts = %v", keys)
	}

	if err := c.DeleteProduct(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Product(ctx, "p1")
	wantError(t, err, 404, client.CodeNotFound, "p1")
	wantError(t, c.DeleteProduct(ctx, "p1"), 404, client.CodeNotFound, "p1")
}

func productKeys(t *testing.T, seq func(func(client.Product, error) bool)) []string {
	t.Helper()
	var keys []string
	for p, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, p.Key)
	}
	slices.Sort(keys)
	return keys
}

func TestDevices(t *testing.T) {
	s := startServer(t)
	c, ctx := s.admin, ctx(t)
	mustProduct(t, c, "demo")

	d, err := c.CreateDevice(ctx, "demo", client.DeviceCreate{Key: "d1", Tags: map[string]string{"site": "paris"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Key != "d1" || d.Product != "demo" || !hexSecret.MatchString(d.Secret) || d.Tags["site"] != "paris" || d.Online {
		t.Errorf("created %+v", d)
	}
	_, err = c.CreateDevice(ctx, "demo", client.DeviceCreate{Key: "d1"})
	wantError(t, err, 409, client.CodeConflict, "d1")
	_, err = c.CreateDevice(ctx, "nope", client.DeviceCreate{Key: "d1"})
	wantError(t, err, 404, client.CodeNotFound, "nope")

	csv := "# site devices\nd2,site=lyon,ring=beta\n\nd3,site=paris\nnode-4\n"
	res, err := c.ImportDevices(ctx, "demo", strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 3 || len(res.Devices) != 3 {
		t.Fatalf("import: %+v", res)
	}
	for _, d := range res.Devices {
		if !hexSecret.MatchString(d.Secret) {
			t.Errorf("imported %q with secret %q", d.Key, d.Secret)
		}
	}
	_, err = c.ImportDevices(ctx, "demo", strings.NewReader("d5\nd6,notatag\n"))
	wantError(t, err, 400, client.CodeInvalid, "line 2")
	_, err = c.Device(ctx, "demo", "d5")
	wantError(t, err, 404, client.CodeNotFound, "d5")

	online := false
	tests := []struct {
		name string
		f    client.DeviceFilter
		want []string
	}{
		{"all", client.DeviceFilter{Product: "demo"}, []string{"d1", "d2", "d3", "node-4"}},
		{"tag", client.DeviceFilter{Product: "demo", Tags: map[string]string{"site": "paris"}}, []string{"d1", "d3"}},
		{"two tags", client.DeviceFilter{Tags: map[string]string{"site": "lyon", "ring": "beta"}}, []string{"d2"}},
		{"prefix", client.DeviceFilter{Product: "demo", Prefix: "node"}, []string{"node-4"}},
		{"offline", client.DeviceFilter{Product: "demo", Online: &online}, []string{"d1", "d2", "d3", "node-4"}},
		{"other product", client.DeviceFilter{Product: "other"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := deviceKeys(t, c.AllDevices(ctx, tt.f, client.ListOptions{Limit: 1})); !slices.Equal(got, tt.want) {
				t.Errorf("AllDevices(%+v) = %v, want %v", tt.f, got, tt.want)
			}
		})
	}

	// Keys are path segments.
	got, err := c.Device(ctx, "demo", "node-4")
	if err != nil || got.Key != "node-4" {
		t.Fatalf("Device(node-4) = %+v, %v", got, err)
	}
	tagged, err := c.SetDeviceTags(ctx, "demo", "d1", map[string]string{"ring": "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"ring": "alpha"}, tagged.Tags); diff != "" {
		t.Errorf("tags after SetDeviceTags (-want +got):\n%s", diff)
	}
	cleared, err := c.SetDeviceTags(ctx, "demo", "d1", nil)
	if err != nil || len(cleared.Tags) != 0 {
		t.Errorf("SetDeviceTags(nil) = %+v, %v; want no tags", cleared, err)
	}

	rotated, err := c.RotateDeviceSecret(ctx, "demo", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if !hexSecret.MatchString(rotated.Secret) || rotated.Secret == d.Secret {
		t.Errorf("rotated secret %q (old %q)", rotated.Secret, d.Secret)
	}
	if err := c.DeleteDevice(ctx, "demo", "d1"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Device(ctx, "demo", "d1")
	wantError(t, err, 404, client.CodeNotFound, "d1")
	wantError(t, c.DeleteProduct(ctx, "demo"), 409, client.CodeConflict, "")
}

func deviceKeys(t *testing.T, seq func(func(client.Device, error) bool)) []string {
	t.Helper()
	var keys []string
	for d, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, d.Key)
	}
	slices.Sort(keys)
	return keys
}

func mustProduct(t *testing.T, c *client.Client, key string) {
	t.Helper()
	if _, err := c.CreateProduct(t.Context(), client.ProductCreate{Key: key}); err != nil {
		t.Fatal(err)
	}
}

func randomFile(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func TestFirmware(t *testing.T) {
	s := startServer(t)
	c, ctx := s.admin, ctx(t)
	mustProduct(t, c, "demo")
	file, sum := randomFile(t, 3<<20+17)

	var last int64
	up := client.FirmwareUpload{
		Product: "demo", Version: "1.1.0", From: []string{"1.0.0", "1.0.1"}, SHA256: sum,
		Params: map[string]string{"reboot": "soft", "url": "a=b"}, Description: "fixes",
		VerifyRequired: true, Size: int64(len(file)), Progress: func(n int64) { last = n },
	}
	fw, err := c.UploadFirmware(ctx, up, bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if last != int64(len(file)) {
		t.Errorf("progress ended at %d of %d bytes", last, len(file))
	}
	want := client.Firmware{
		ID: fw.ID, Product: "demo", Module: "default", Version: "1.1.0", Size: int64(len(file)), SHA256: sum,
		Signature: fw.Signature, FromVersions: []string{"1.0.0", "1.0.1"}, Params: up.Params,
		Description: "fixes", VerifyRequired: true, Status: "active", CreatedAt: fw.CreatedAt,
	}
	if diff := cmp.Diff(&want, fw); diff != "" || fw.ID == 0 || fw.Signature == "" {
		t.Errorf("uploaded firmware (-want +got):\n%s", diff)
	}

	_, err = c.UploadFirmware(ctx, up, bytes.NewReader(file))
	wantError(t, err, 409, client.CodeConflict, "1.1.0")
	wrong := client.FirmwareUpload{Product: "demo", Version: "1.2.0", SHA256: strings.Repeat("0", 64), Size: int64(len(file))}
	_, err = c.UploadFirmware(ctx, wrong, bytes.NewReader(file))
	wantError(t, err, 422, client.CodeMismatch, sum)
	// Unknown size: the body goes chunked.
	chunked, err := c.UploadFirmware(ctx, client.FirmwareUpload{Product: "demo", Module: "modem", Version: "2.0.0"},
		io.MultiReader(bytes.NewReader(file[:100]), bytes.NewReader(file[100:1000])))
	if err != nil {
		t.Fatal(err)
	}
	if chunked.Size != 1000 {
		t.Errorf("chunked upload stored %d bytes, want 1000", chunked.Size)
	}

	var got bytes.Buffer
	n, err := c.DownloadFirmware(ctx, fw.ID, &got)
	if err != nil || n != int64(len(file)) || !bytes.Equal(got.Bytes(), file) {
		t.Fatalf("download: %d bytes, equal %v, err %v", n, bytes.Equal(got.Bytes(), file), err)
	}
	one, err := c.Firmware(ctx, fw.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fw, one); diff != "" {
		t.Errorf("Firmware(id) (-uploaded +got):\n%s", diff)
	}
	var ids []int64
	for f, err := range c.AllFirmware(ctx, client.FirmwareFilter{Product: "demo", Module: "modem"}, client.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	if !slices.Equal(ids, []int64{chunked.ID}) {
		t.Errorf("modem firmware = %v, want [%d]", ids, chunked.ID)
	}

	if err := c.DeleteFirmware(ctx, fw.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.DownloadFirmware(ctx, fw.ID, io.Discard)
	wantError(t, err, 404, client.CodeNotFound, "")
}

// TestSigningKeyVerifiesFirmware checks the signing key and signature a
// device would check, end to end.
func TestSigningKeyVerifiesFirmware(t *testing.T) {
	s := startServer(t)
	c, ctx := s.admin, ctx(t)
	mustProduct(t, c, "demo")
	file, sum := randomFile(t, 4096)
	fw, err := c.UploadFirmware(ctx, client.FirmwareUpload{Product: "demo", Version: "1.0.0", Size: 4096}, bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if key.Algorithm != "ed25519" || len(key.PublicKey) != 32 {
		t.Fatalf("signing key %+v", key)
	}
	m := wire.Manifest{Product: "demo", Module: "default", Version: "1.0.0", Size: 4096, SHA256: sum}
	if !m.Verify(key.PublicKey, fw.Signature) {
		t.Error("the firmware's signature does not verify with the signing key")
	}
	m.Version = "1.0.1"
	if m.Verify(key.PublicKey, fw.Signature) {
		t.Error("the signature verifies for another version too")
	}
}

func TestTokens(t *testing.T) {
	s := startServer(t)
	c, ctx := s.admin, ctx(t)

	viewer, err := c.CreateToken(ctx, client.TokenCreate{Name: "dash", Role: client.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(viewer.Secret, "otr_") || viewer.Role != client.RoleViewer || viewer.Name != "dash" || viewer.ID == 0 {
		t.Errorf("created %+v", viewer)
	}
	_, err = c.CreateToken(ctx, client.TokenCreate{Role: "root"})
	if ce := (*client.Error)(nil); !errors.As(err, &ce) || ce.Status/100 != 4 {
		t.Errorf("role root: %v, want a 4xx", err)
	}

	vc := client.New(s.url, viewer.Secret)
	if _, err := vc.ListProducts(ctx, client.ListOptions{}); err != nil {
		t.Errorf("viewer cannot list products: %v", err)
	}
	_, err = vc.CreateProduct(ctx, client.ProductCreate{Key: "x"})
	wantError(t, err, 403, client.CodeForbidden, "")
	_, err = vc.ListTokens(ctx, client.ListOptions{})
	wantError(t, err, 403, client.CodeForbidden, "")

	byID := map[int64]client.Token{}
	for tok, err := range c.AllTokens(ctx, client.ListOptions{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		byID[tok.ID] = tok
	}
	if len(byID) != 2 || byID[viewer.ID].Name != "dash" {
		t.Errorf("tokens: %v", slices.Collect(maps.Values(byID)))
	}

	if err := c.RevokeToken(ctx, viewer.ID); err != nil {
		t.Fatal(err)
	}
	_, err = vc.ListProducts(ctx, client.ListOptions{})
	wantError(t, err, 401, client.CodeUnauthorized, "")
	_, err = client.New(s.url, "").ListProducts(ctx, client.ListOptions{})
	wantError(t, err, 401, client.CodeUnauthorized, "")
	revoked, err := c.ListTokens(ctx, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range revoked.Items {
		if tok.ID == viewer.ID && tok.RevokedAt == nil {
			t.Error("the revoked token has no revoked_at")
		}
	}
}

func TestEvents(t *testing.T) {
	s := startServer(t)
	c, ctx := s.admin, ctx(t)
	mustProduct(t, c, "demo")
	mustProduct(t, c, "other")
	if _, err := c.CreateDevice(ctx, "demo", client.DeviceCreate{Key: "d1"}); err != nil {
		t.Fatal(err)
	}

	var kinds []string
	for e, err := range c.AllEvents(ctx, client.EventFilter{Product: "demo"}, client.ListOptions{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Product != "demo" || e.Actor == "" || e.At.IsZero() {
			t.Errorf("event %+v", e)
		}
		kinds = append(kinds, e.Kind+" "+e.Action)
	}
	// Newest first.
	if want := []string{"device created", "product created"}; !slices.Equal(kinds, want) {
		t.Errorf("events of demo = %v, want %v", kinds, want)
	}
	page, err := c.ListEvents(ctx, client.EventFilter{Kind: "device", Device: "d1"}, client.ListOptions{})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("device events: %+v, %v", page, err)
	}
	future, err := c.ListEvents(ctx, client.EventFilter{Since: page.Items[0].At.Add(1e9)}, client.ListOptions{})
	if err != nil || len(future.Items) != 0 {
		t.Errorf("events after the last one: %+v, %v", future, err)
	}
}

func TestContextCancelStopsCall(t *testing.T) {
	s := startServer(t)
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.admin.ListProducts(cctx, client.ListOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("call with a cancelled context: %v, want context.Canceled", err)
	}
}
