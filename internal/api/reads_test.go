package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/priority"
	"github.com/otter-ota/otter/internal/store"
)

// readsSeen records whether a read was in flight when the API called the
// store to list or to create products.
type readsSeen struct {
	store.Store
	reads          *priority.Reads
	list, creating bool
}

func (s *readsSeen) ListProducts(ctx context.Context, page store.Page) ([]ota.Product, string, error) {
	s.list = s.reads.Busy()
	return s.Store.ListProducts(ctx, page)
}

func (s *readsSeen) CreateProduct(ctx context.Context, p *ota.Product) error {
	s.creating = s.reads.Busy()
	return s.Store.CreateProduct(ctx, p)
}

// A GET is a read in flight while it is served, which the engine's job
// starts let go first; a POST is not, and nothing stays in flight after.
func TestReadsInFlightAreCounted(t *testing.T) {
	reads := new(priority.Reads)
	var seen *readsSeen
	e := newEnvWith(t, envOptions{reads: reads, wrap: func(st store.Store) store.Store {
		seen = &readsSeen{Store: st, reads: reads}
		return seen
	}})
	if r := e.do(request{method: http.MethodPost, path: "/api/v1/products", token: e.admin, body: map[string]any{"key": "demo"}}); r.status != http.StatusCreated {
		t.Fatalf("create product: %d %s", r.status, r.body)
	}
	if r := e.do(request{method: http.MethodGet, path: "/api/v1/products", token: e.admin}); r.status != http.StatusOK {
		t.Fatalf("list products: %d %s", r.status, r.body)
	}
	if !seen.list || seen.creating {
		t.Errorf("a read in flight while listing: %t, while creating: %t; want true, false", seen.list, seen.creating)
	}
	if reads.Busy() {
		t.Error("a read is still in flight after the answers")
	}
}
