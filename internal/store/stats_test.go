package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

func TestFleetStats(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "a")
		createProduct(t, s, "b")
		createProduct(t, s, "empty")
		if versions, err := s.VersionCounts(ctx); err != nil || len(versions) != 0 {
			t.Errorf("version counts without devices: %v %v", versions, err)
		}
		devs := newDevices("a", "a", 5)
		for i := range devs {
			devs[i].Versions = map[string]string{"default": []string{"1.0", "1.1"}[i%2], "modem": "7"}
		}
		created := createDevices(t, s, devs)
		versions, err := s.VersionCounts(ctx)
		must(t, err)
		if len(versions) != 3 || versions[0] != (store.VersionCount{Product: "a", Module: "default", Version: "1.0", Devices: 3}) {
			t.Errorf("version counts of a one-product fleet: %+v", versions)
		}
		bdevs := newDevices("b", "b", 2)
		bdevs[0].Versions = map[string]string{"default": "2.0"}
		createDevices(t, s, bdevs)
		now := time.Now()
		_, err = s.Apply(ctx, ota.ChangeSet{Presence: []ota.Presence{
			{DeviceID: created[0].ID, Online: true, At: now}, {DeviceID: created[3].ID, Online: true, At: now},
		}})
		must(t, err)

		products, err := s.ProductStats(ctx)
		must(t, err)
		want := []store.ProductStats{{Product: "a", Devices: 5, Online: 2}, {Product: "b", Devices: 2}}
		if d := cmp.Diff(want, products); d != "" {
			t.Errorf("product stats (-want +got):\n%s", d)
		}
		versions, err = s.VersionCounts(ctx)
		must(t, err)
		wantVersions := []store.VersionCount{
			{Product: "a", Module: "default", Version: "1.0", Devices: 3},
			{Product: "a", Module: "default", Version: "1.1", Devices: 2},
			{Product: "a", Module: "modem", Version: "7", Devices: 5},
			{Product: "b", Module: "default", Version: "2.0", Devices: 1},
		}
		if d := cmp.Diff(wantVersions, versions); d != "" {
			t.Errorf("version counts (-want +got):\n%s", d)
		}
	})
}

func TestRecentFailures(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "a")
		var events []ota.Event
		for i, action := range []string{"failed", "succeeded", "timed_out", "notified", "failed"} {
			events = append(events, ota.Event{At: time.Now(), Actor: "engine", Kind: ota.KindJob, Action: action,
				Product: "a", Device: fmt.Sprint("d", i), JobID: int64(i + 1)})
		}
		events = append(events, ota.Event{At: time.Now(), Actor: "admin", Kind: ota.KindTask, Action: "failed"})
		_, err := s.Apply(ctx, ota.ChangeSet{Events: events})
		must(t, err)
		got, err := s.RecentFailures(ctx, 10)
		must(t, err)
		var devices []string
		for _, e := range got {
			devices = append(devices, e.Device+":"+e.Action)
		}
		if d := cmp.Diff([]string{"d4:failed", "d2:timed_out", "d0:failed"}, devices); d != "" {
			t.Errorf("recent failures, newest first (-want +got):\n%s", d)
		}
		got, err = s.RecentFailures(ctx, 1)
		must(t, err)
		if len(got) != 1 || got[0].Device != "d4" {
			t.Errorf("limit 1: %+v", got)
		}
		_, err = s.RecentFailures(ctx, 0)
		wantCode(t, err, ota.EINVALID)
	})
}

// BenchmarkFleetStats reads the console's fleet aggregates over 100,000
// devices with two reported modules each, in one product and in two (which
// needs a join); the console caches them.
func BenchmarkFleetStats(b *testing.B) {
	for _, products := range []int{1, 2} {
		b.Run(fmt.Sprint(products, "products"), func(b *testing.B) { benchmarkFleetStats(b, products) })
	}
}

func benchmarkFleetStats(b *testing.B, products int) {
	benchmark(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		for p := range products {
			createProduct(b, s, fmt.Sprint("p", p))
		}
		for batch := range 10 {
			devs := newDevices(fmt.Sprint("p", batch%products), fmt.Sprint("b", batch), 10000)
			for i := range devs {
				devs[i].Versions = map[string]string{"default": fmt.Sprintf("1.%d.0", i%7), "modem": fmt.Sprint(i % 3)}
			}
			createDevices(b, s, devs)
		}
		for b.Loop() {
			stats, err := s.ProductStats(ctx)
			if err != nil || len(stats) != products || stats[0].Devices != int64(100000/products) {
				b.Fatalf("%+v %v", stats, err)
			}
			versions, err := s.VersionCounts(ctx)
			if err != nil || len(versions) != 10*products {
				b.Fatalf("%d versions, %v", len(versions), err)
			}
		}
	})
}
