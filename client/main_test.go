package client_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// testServer is a real otter on ephemeral ports with a fresh database
// (PostgreSQL when OTTER_TEST_POSTGRES_URL is set, SQLite otherwise).
type testServer struct {
	url   string
	admin *client.Client
	token string
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := server.Start(ctx, server.Config{
		DataDir:  t.TempDir(),
		HTTPAddr: "127.0.0.1:0",
		MQTTAddr: "127.0.0.1:0",
		DBURL:    storetest.URL(t),
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if s.AdminToken() == "" {
		t.Fatal("a fresh server created no admin token")
	}
	return &testServer{url: s.HTTPURL(), token: s.AdminToken(), admin: client.New(s.HTTPURL(), s.AdminToken())}
}

// ctx returns a context that ends with the test, bounded so that a hung
// server fails the test instead of the whole run.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
