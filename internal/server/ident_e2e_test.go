package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/sdk/wire"
)

// TestIdentifierRulesAgreeOnEveryPath sends the same keys, versions and tag
// values through every path that takes them (the REST API for products,
// devices, tags, firmware and CSV import; the HTTP device API and MQTT for
// what devices report) and checks that each path accepts exactly what the
// rules of sdk/wire accept.
func TestIdentifierRulesAgreeOnEveryPath(t *testing.T) {
	o := start(t)
	o.docFirmware(readProtocolDoc(t)) // product "demo"
	secret := o.devices("d1")["d1"]
	if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: "csv"}); err != nil {
		t.Fatal(err)
	}
	keys := []string{"Modem", "modem", "SN_0042.b", "aa-bb-cc-dd-ee-ff", "9", "-x", "_x", ".x", "a:b", "a b", "é", "",
		strings.Repeat("k", wire.MaxKeyLength), strings.Repeat("k", wire.MaxKeyLength+1)}
	for i, key := range keys {
		want := wire.CheckKey("key", key) == nil
		paths := map[string]bool{
			"product create":  errIsNil(o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: key})),
			"device create":   errIsNil(o.api.CreateDevice(o.ctx(), "demo", client.DeviceCreate{Key: key})),
			"CSV import":      errIsNil(o.api.ImportDevices(o.ctx(), "csv", strings.NewReader(key+"\n"))),
			"tag name":        errIsNil(o.api.CreateDevice(o.ctx(), "demo", client.DeviceCreate{Key: fmt.Sprintf("t%d", i), Tags: map[string]string{key: "v"}})),
			"firmware module": errIsNil(o.api.UploadFirmware(o.ctx(), client.FirmwareUpload{Product: "demo", Module: key, Version: "1.0.0"}, strings.NewReader("x"))),
			"HTTP inform":     o.deviceCall(http.MethodPost, wire.PathInform, "demo/d1", secret, `{"modules":{"`+key+`":"1.0.0"}}`).status == http.StatusNoContent,
		}
		if key == "" {
			delete(paths, "firmware module") // no module means module default
		}
		for path, ok := range paths {
			if ok != want {
				t.Errorf("key %.20q: %s accepts it: %v; the rule says %v", key, path, ok, want)
			}
		}
	}
	for _, v := range []string{"1.1.0", "release-b", "Ünïcode", "1.0 beta", "1.0\t", strings.Repeat("1", wire.MaxVersionLen+1)} {
		want := wire.CheckVersion("version", v) == nil
		up := errIsNil(o.api.UploadFirmware(o.ctx(), client.FirmwareUpload{Product: "demo", Module: "vers", Version: v, From: []string{"0"}}, strings.NewReader("x")))
		inform := o.deviceCall(http.MethodPost, wire.PathInform, "demo/d1", secret, `{"modules":{"vers":`+quoteJSON(v)+`}}`).status == http.StatusNoContent
		if up != want || inform != want {
			t.Errorf("version %.20q: firmware add %v, inform %v; the rule says %v", v, up, inform, want)
		}
	}
	for i, v := range []string{"paris", "a=b", "a,b", "", "a\nb", strings.Repeat("x", wire.MaxTagValue+1)} {
		want := wire.CheckTagValue("site", v) == nil
		ok := errIsNil(o.api.CreateDevice(o.ctx(), "demo", client.DeviceCreate{Key: fmt.Sprintf("v%d", i), Tags: map[string]string{"site": v}}))
		if ok != want {
			t.Errorf("tag value %.20q: device create accepts it: %v; the rule says %v", v, ok, want)
		}
	}
}

func errIsNil[T any](_ T, err error) bool { return err == nil }

func quoteJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
