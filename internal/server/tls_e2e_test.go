package server_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/internal/testcert"
	"github.com/otter-ota/otter/sdk/wire"
)

// TestHTTPSServesTheAPIConsoleAndDownloads runs the HTTP listener over TLS:
// the API, the console (with a Secure cookie) and the download URLs the
// devices get are all https.
func TestHTTPSServesTheAPIConsoleAndDownloads(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := testcert.Write(t, dir)
	const admin = "otr_e2e-admin-token-for-tests-only"
	s, err := server.Start(t.Context(), server.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", DBURL: storetest.URL(t),
		TLSCertFile: certFile, TLSKeyFile: keyFile, AdminToken: admin, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !strings.HasPrefix(s.HTTPURL(), "https://127.0.0.1:") {
		t.Fatalf("HTTPURL %s, want https", s.HTTPURL())
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	o := &otter{t: t, srv: s, api: client.New(s.HTTPURL(), admin, client.WithHTTPClient(hc)), dir: dir}

	info, err := o.api.ServerInfo(o.ctx())
	if err != nil || info.HTTP != s.HTTPURL() {
		t.Fatalf("server info over HTTPS: %+v %v", info, err)
	}
	fw, image, secrets := o.setup("d1")
	d, _, err := o.dialMQTT("demo", "d1", secrets["d1"])
	if err != nil {
		t.Fatal(err)
	}
	d.subscribe(d.topic(wire.KindUpgrade))
	d.publish(d.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	if _, err := o.api.CreateTask(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}}); err != nil {
		t.Fatal(err)
	}
	u, err := wire.DecodeUpgrade(d.next(wire.KindUpgrade))
	if err != nil || !strings.HasPrefix(u.URL, s.HTTPURL()+"/") {
		t.Fatalf("upgrade %+v %v: want a download URL on %s", u, err, s.HTTPURL())
	}
	if got := get(t, hc, u.URL); got != string(image) {
		t.Fatalf("downloaded %d bytes over HTTPS, want the %d-byte firmware", len(got), len(image))
	}

	if cks := signinCookies(t, hc, s.HTTPURL(), admin); len(cks) == 0 || !cks[0].Secure {
		t.Errorf("the console's cookie over HTTPS is not Secure: %v", cks)
	}
	// Plain HTTP on the HTTPS port is answered with an error, never served.
	plain, err := http.Get("http://" + strings.TrimPrefix(s.HTTPURL(), "https://") + "/api/v1/products")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the HTTPS port: %d", plain.StatusCode)
		}
	}
}

func get(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestHTTPSWithABadCertificateDoesNotStart names the flags and creates no
// admin token.
func TestHTTPSWithABadCertificateDoesNotStart(t *testing.T) {
	dir, db := t.TempDir(), storetest.URL(t)
	_, err := server.Start(t.Context(), server.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", DBURL: db,
		TLSCertFile: filepath.Join(dir, "nosuch.pem"), TLSKeyFile: filepath.Join(dir, "nosuch.key"), Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("start with a missing certificate: %v", err)
	}
	if n, err := storetest.OpenURL(t, db).CountTokens(t.Context()); err != nil || n != 0 {
		t.Fatalf("a failed start left %d tokens (%v)", n, err)
	}
}
