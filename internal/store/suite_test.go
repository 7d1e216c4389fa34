package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// run runs test on a fresh store of every backend: SQLite always,
// PostgreSQL when OTTER_TEST_POSTGRES_URL is set.
func run(t *testing.T, test func(t *testing.T, s store.Store), opts ...store.Option) {
	t.Helper()
	runURL(t, func(t *testing.T, url string) { test(t, storetest.OpenURL(t, url, opts...)) })
}

// runURL runs test with the URL of a fresh database of every backend.
func runURL(t *testing.T, test func(t *testing.T, url string)) {
	t.Helper()
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, b.URL(t))
		})
	}
}

// as returns a context whose changes are recorded as made by actor.
func as(actor string) context.Context {
	return ota.WithActor(context.Background(), actor)
}

// wantCode fails the test unless err carries the ota error code want.
func wantCode(t *testing.T, err error, want string) {
	t.Helper()
	if got := ota.ErrorCode(err); got != want {
		t.Fatalf("error code = %q (%v), want %q", got, err, want)
	}
}

// must fails the test on err.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func createProduct(t testing.TB, s store.Store, key string) ota.Product {
	t.Helper()
	p := ota.Product{Key: key, Name: "Product " + key}
	must(t, s.CreateProduct(as("admin"), &p))
	return p
}

// newDevices returns n devices of product keyed prefix-0000...
func newDevices(product, prefix string, n int) []store.NewDevice {
	devs := make([]store.NewDevice, n)
	for i := range devs {
		key := fmt.Sprintf("%s-%05d", prefix, i)
		devs[i] = store.NewDevice{Product: product, Key: key, SecretHash: hash(key)}
	}
	return devs
}

func createDevices(t testing.TB, s store.Store, devs []store.NewDevice) []ota.Device {
	t.Helper()
	out, err := s.CreateDevices(as("admin"), devs)
	must(t, err)
	return out
}

// lastEvent returns the newest event.
func lastEvent(t *testing.T, s store.Store) ota.Event {
	t.Helper()
	events, _, err := s.ListEvents(context.Background(), store.EventFilter{}, store.Page{Limit: 1})
	must(t, err)
	if len(events) == 0 {
		t.Fatal("no events")
	}
	return events[0]
}

func errorsAs(err error, target **ota.Error) bool { return errors.As(err, target) }
