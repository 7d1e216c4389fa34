package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// collect pages through list with pages of limit items and returns every
// item and the number of pages read.
func collect[T any](t *testing.T, limit int, list func(store.Page) ([]T, string, error)) ([]T, int) {
	t.Helper()
	var all []T
	page := store.Page{Limit: limit}
	for pages := 1; ; pages++ {
		items, next, err := list(page)
		must(t, err)
		if len(items) > limit {
			t.Fatalf("page %d holds %d items, limit %d", pages, len(items), limit)
		}
		all = append(all, items...)
		if next == "" {
			return all, pages
		}
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
		page.After = next
	}
}

func TestProductCreateGet(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		p := ota.Product{Key: "thermostat-v2", Name: "Thermostat", Description: "second generation"}
		must(t, s.CreateProduct(as("alice"), &p))
		if p.CreatedAt.IsZero() || p.CreatedAt.Location() != time.UTC {
			t.Fatalf("CreatedAt = %v, want a UTC time", p.CreatedAt)
		}
		got, err := s.GetProduct(ctx, "thermostat-v2")
		must(t, err)
		if diff := cmp.Diff(p, got); diff != "" {
			t.Errorf("GetProduct (-want +got):\n%s", diff)
		}
		want := ota.Event{Actor: "alice", Kind: ota.KindProduct, Action: "created", Product: "thermostat-v2"}
		if diff := cmp.Diff(want, lastEvent(t, s), ignoreEventIDAt); diff != "" {
			t.Errorf("event (-want +got):\n%s", diff)
		}
		wantCode(t, s.CreateProduct(ctx, &ota.Product{Key: "thermostat-v2"}), ota.ECONFLICT)
		_, err = s.GetProduct(ctx, "nope")
		wantCode(t, err, ota.ENOTFOUND)
	})
}

func TestProductInvalidKeys(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		for _, key := range []string{"", "a/b", "a b", "a+b", "a#", "x\n", string(make([]byte, 129))} {
			wantCode(t, s.CreateProduct(context.Background(), &ota.Product{Key: key}), ota.EINVALID)
		}
		products, _, err := s.ListProducts(context.Background(), store.Page{})
		must(t, err)
		if len(products) != 0 {
			t.Errorf("invalid products were stored: %v", products)
		}
	})
}

func TestProductList(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		var want []string
		for _, k := range []string{"e", "a", "d", "b", "c"} {
			createProduct(t, s, k)
		}
		want = []string{"a", "b", "c", "d", "e"}
		all, pages := collect(t, 2, func(p store.Page) ([]ota.Product, string, error) {
			return s.ListProducts(context.Background(), p)
		})
		var got []string
		for _, p := range all {
			got = append(got, p.Key)
		}
		if diff := cmp.Diff(want, got); diff != "" || pages != 3 {
			t.Errorf("pages = %d, keys (-want +got):\n%s", pages, diff)
		}
	})
}

func TestProductDelete(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "demo")
		createDevices(t, s, newDevices("demo", "dev", 3))
		fw := newFirmware("demo", "1.0.0")
		must(t, s.CreateFirmware(ctx, &fw))

		err := s.DeleteProduct(ctx, "demo")
		wantCode(t, err, ota.ECONFLICT)
		if want := `product "demo" has 3 devices and 1 firmware: delete them first`; err.Error() != want {
			t.Errorf("message = %q, want %q", err, want)
		}
		for _, k := range []string{"dev-00000", "dev-00001", "dev-00002"} {
			must(t, s.DeleteDevice(ctx, "demo", k))
		}
		err = s.DeleteProduct(ctx, "demo")
		if want := `product "demo" has 1 firmware: delete them first`; err == nil || err.Error() != want {
			t.Errorf("error = %v, want %q", err, want)
		}
		must(t, s.DeleteFirmware(ctx, fw.ID))
		must(t, s.DeleteProduct(as("bob"), "demo"))
		_, err = s.GetProduct(ctx, "demo")
		wantCode(t, err, ota.ENOTFOUND)
		wantCode(t, s.DeleteProduct(ctx, "demo"), ota.ENOTFOUND)
		want := ota.Event{Actor: "bob", Kind: ota.KindProduct, Action: "deleted", Product: "demo"}
		if diff := cmp.Diff(want, lastEvent(t, s), ignoreEventIDAt); diff != "" {
			t.Errorf("event (-want +got):\n%s", diff)
		}
	})
}
