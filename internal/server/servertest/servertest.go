// Package servertest starts a whole otter (internal/server) for the tests of
// the packages that talk to it (client, cli): ephemeral ports, a fresh data
// folder and a fresh database (storetest: PostgreSQL when
// OTTER_TEST_POSTGRES_URL is set, SQLite otherwise). Report makes a device
// report its version over the device HTTP API, as firmware would, so tasks
// run to their end with no device SDK in the test. Only tests import it.
package servertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// Start starts a server that stops when the test ends. Its admin token is
// AdminToken, its base URL HTTPURL.
func Start(tb testing.TB) *server.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := server.Start(ctx, server.Config{
		DataDir: tb.TempDir(), HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		DBURL: storetest.URL(tb), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if s.AdminToken() == "" {
		tb.Fatal("a fresh server created no admin token")
	}
	return s
}

// Report makes a device of the server at baseURL report the version its
// default module runs; a job waiting for that version succeeds. It returns
// the error, so that goroutines other than the test's may call it.
func Report(ctx context.Context, baseURL, product, device, secret, version string) error {
	body := wire.Encode(wire.Inform{Modules: map[string]string{ota.DefaultModule: version}})
	url := strings.TrimRight(baseURL, "/") + wire.HTTPPath(wire.KindInform)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(wire.Username(product, device), secret)
	req.Header.Set("Content-Type", wire.ContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("report %s/%s %s: %w", product, device, version, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("report %s/%s %s: %w", product, device, version, err)
	}
	// 200 carries an upgrade command, which this device ignores.
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("report %s/%s %s: HTTP %d: %s", product, device, version, resp.StatusCode, answer)
	}
	return nil
}
