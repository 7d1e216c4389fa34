package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/server/servertest"
)

// testServer is a real otter (servertest) with an admin client.
type testServer struct {
	url   string
	admin *client.Client
	token string
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	s := servertest.Start(t)
	return &testServer{url: s.HTTPURL(), token: s.AdminToken(), admin: client.New(s.HTTPURL(), s.AdminToken())}
}

// ctx returns a context that ends with the test, bounded so that a hung
// server fails the test instead of the whole run.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
