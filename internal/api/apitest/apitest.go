// Package apitest runs the operator API over a real store with a real
// rollout engine on an ephemeral port, for the tests of the packages that
// call the API (client, cli). No device connects: the engine's commands go
// nowhere, and a test makes a device report its version straight to the
// engine (Server.Report), so tasks run to their end with neither a broker
// nor the device API. The end-to-end tests with devices start a whole
// otter (internal/server).
package apitest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/api"
	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/signing"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// Server is a running API with its store and engine.
type Server struct {
	// URL is the base URL (without /api/v1).
	URL string
	// Token is an admin token.
	Token  string
	Store  store.Store
	Engine *engine.Engine
}

// Start starts a server that stops when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	st := storetest.Open(tb)
	eng := startEngine(tb, st)
	blobs, err := blob.NewFS(filepath.Join(tb.TempDir(), "blobs"))
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := signing.LoadOrCreate(filepath.Join(tb.TempDir(), "signing.key"))
	if err != nil {
		tb.Fatal(err)
	}
	a, err := api.New(api.Config{Store: st, Blobs: blobs, Signer: signer, Engine: eng, Metrics: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	tb.Cleanup(srv.Close)
	token, err := api.BootstrapAdmin(context.Background(), st, "")
	if err != nil {
		tb.Fatal(err)
	}
	return &Server{URL: srv.URL, Token: token, Store: st, Engine: eng}
}

func startEngine(tb testing.TB, st store.Store) *engine.Engine {
	tb.Helper()
	eng, err := engine.New(engine.Config{Store: st, Downlink: discard{}, URLs: fixedURL{},
		Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(), Tick: 10 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("engine: %v", err)
		}
	})
	return eng
}

// Report makes a registered device report the version its default module
// runs, as it would over MQTT or HTTP; a job waiting for that version
// succeeds.
func (s *Server) Report(tb testing.TB, product, device, version string) {
	tb.Helper()
	if err := s.Inform(context.Background(), product, device, version); err != nil {
		tb.Fatal(err)
	}
}

// Inform is Report for goroutines other than the test's: it returns the
// error.
func (s *Server) Inform(ctx context.Context, product, device, version string) error {
	d, err := s.Store.GetDevice(ctx, product, device)
	if err != nil {
		return err
	}
	dev := engine.Device{ID: d.ID, Product: product, Key: device}
	_, err = s.Engine.Inform(ctx, dev, wire.Inform{Modules: map[string]string{"default": version}})
	return err
}

// discard drops what the engine sends: no device is connected.
type discard struct{}

func (discard) Send(string, string, string, []byte) {}

type fixedURL struct{}

func (fixedURL) DownloadURL(string, string, int64) string { return "http://127.0.0.1:1/firmware.bin" }
