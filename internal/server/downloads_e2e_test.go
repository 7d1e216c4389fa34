package server_test

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/internal/testcert"
)

// startDownloads starts otter with a download listener (--download-http)
// and the quick timeouts.
func startDownloads(t *testing.T, edit ...func(*server.Config)) *otter {
	return startIn(t, t.TempDir(), storetest.URL(t), append([]func(*server.Config){func(c *server.Config) {
		c.HTTPTimeouts, c.DownloadAddr = quick, "127.0.0.1:0"
	}}, edit...)...)
}

// With --download-http, download URLs lead to the download listener, a
// slow but steady download there completes, and a client that stops
// reading is cut after the transfer window, releasing its slot.
func TestDownloadListenerServesSlowClientsAndCutsStalledOnes(t *testing.T) {
	o := startDownloads(t)
	if !strings.HasPrefix(o.srv.DownloadURL(), "http://127.0.0.1:") || o.srv.DownloadURL() == o.srv.HTTPURL() {
		t.Fatalf("DownloadURL %q beside HTTPURL %q", o.srv.DownloadURL(), o.srv.HTTPURL())
	}
	fw, image := o.firmware("demo", "3.0.0", 8<<20)
	u := o.downloadURL(fw, "d1")
	if !strings.HasPrefix(u, o.srv.DownloadURL()+"/dl/") {
		t.Fatalf("download URL %s, want one on the download listener %s", u, o.srv.DownloadURL())
	}
	start := time.Now()
	got, err := readSlowly(u, 64<<10, 20*time.Millisecond)
	if err != nil || !bytes.Equal(got, image) {
		t.Fatalf("slow download: %d of %d bytes: %v", len(got), len(image), err)
	}
	if took := time.Since(start); took < 3*quick.Write {
		t.Fatalf("the download took %v: too fast to prove anything", took)
	}

	big, _ := o.firmware("demo", "4.0.0", 32<<20) // far more than the socket buffers
	bigURL := o.downloadURL(big, "d2")
	pu, _ := url.Parse(bigURL)
	conn, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET " + pu.RequestURI() + " HTTP/1.1\r\nHost: " + pu.Host + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing: once the socket buffers are full, the
	// server's next chunk waits past its deadline and the download ends.
	waitWithin(t, time.Second, "the stalled download to be served", func() bool { return o.metric("otter_downloads_in_flight 1") })
	stalled := time.Now()
	waitWithin(t, quick.Transfer.Window+cutWithin, "the stalled download to be cut", func() bool { return o.metric("otter_downloads_in_flight 0") })
	if took := time.Since(stalled); took > quick.Transfer.Window+cutWithin {
		t.Fatalf("the stalled download was cut after %v", took)
	}
}

// Downloads beyond --max-downloads are refused on the download listener
// too: the slot is held while the file is sent, after the handler returns.
func TestDownloadListenerKeepsTheCap(t *testing.T) {
	// The default transfer window: the held download is not cut meanwhile.
	o := startDownloads(t, func(c *server.Config) { c.MaxDownloads, c.HTTPTimeouts = 1, deadline.Timeouts{} })
	checkSecondDownloadRefused(t, o)
}

// With --tls-cert, the download listener serves HTTPS too, and the
// download URLs say https.
func TestDownloadListenerServesHTTPS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := testcert.Write(t, dir)
	const admin = "otr_e2e-admin-token-for-tests-only"
	s, err := server.Start(t.Context(), server.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", DBURL: storetest.URL(t), DownloadAddr: "127.0.0.1:0",
		TLSCertFile: certFile, TLSKeyFile: keyFile, AdminToken: admin, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	o := &otter{t: t, srv: s, api: client.New(s.HTTPURL(), admin, client.WithHTTPClient(hc)), dir: dir}
	fw, image := o.firmware("demo", "1.1.0", 100_000)
	u := o.downloadURL(fw, "d1")
	if !strings.HasPrefix(u, "https://") || !strings.HasPrefix(u, s.DownloadURL()+"/dl/") {
		t.Fatalf("download URL %s, want one on https %s", u, s.DownloadURL())
	}
	if got := get(t, hc, u); got != string(image) {
		t.Fatalf("downloaded %d bytes over HTTPS, want the %d-byte firmware", len(got), len(image))
	}
	if resp, err := http.Get("http://" + strings.TrimPrefix(u, "https://")); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP on the HTTPS download listener served the file")
		}
	}
}

// --download-public-url needs a download listener, and must be a URL.
func TestDownloadPublicURLIsChecked(t *testing.T) {
	for _, c := range []server.Config{
		{DownloadPublicURL: "https://dl.example.com"},
		{DownloadAddr: "127.0.0.1:0", DownloadPublicURL: "dl.example.com:8081"},
	} {
		c.DataDir, c.HTTPAddr, c.MQTTAddr, c.Logger = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", slog.New(slog.DiscardHandler)
		s, err := server.Start(t.Context(), c)
		if err == nil {
			s.Close()
			t.Fatalf("%+v started", c)
		}
		if !strings.Contains(err.Error(), "--download-public-url") {
			t.Errorf("%q: want the flag named", err)
		}
	}
}
