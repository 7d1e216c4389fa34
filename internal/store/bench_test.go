package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// benchmark runs bench on a fresh store of every backend.
func benchmark(b *testing.B, bench func(b *testing.B, s store.Store)) {
	for _, backend := range storetest.Backends() {
		b.Run(backend.Name, func(b *testing.B) {
			bench(b, storetest.OpenURL(b, backend.URL(b)))
		})
	}
}

// BenchmarkCreateDevices creates 10,000 tagged devices in one call.
func BenchmarkCreateDevices(b *testing.B) {
	benchmark(b, func(b *testing.B, s store.Store) {
		createProduct(b, s, "p")
		run := 0
		for b.Loop() {
			devs := newDevices("p", fmt.Sprint("run", run), 10000)
			for i := range devs {
				devs[i].Tags = map[string]string{"site": fmt.Sprint(i % 10), "ring": fmt.Sprint(i % 3)}
			}
			run++
			if _, err := s.CreateDevices(context.Background(), devs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*10000), "µs/device")
	})
}

// BenchmarkListDevicesByTag lists a page of 100 devices that match two tags
// among 20,000, 1 in 30 of which match.
func BenchmarkListDevicesByTag(b *testing.B) {
	benchmark(b, func(b *testing.B, s store.Store) {
		createProduct(b, s, "p")
		for batch := range 2 {
			devs := newDevices("p", fmt.Sprint("b", batch), 10000)
			for i := range devs {
				devs[i].Tags = map[string]string{"site": fmt.Sprint(i % 10), "ring": fmt.Sprint(i % 3)}
			}
			createDevices(b, s, devs)
		}
		f := store.DeviceFilter{Product: "p", Tags: map[string]string{"site": "7", "ring": "2"}}
		for b.Loop() {
			devs, _, err := s.ListDevices(context.Background(), f, store.Page{Limit: 100})
			if err != nil || len(devs) != 100 {
				b.Fatalf("%d devices, %v", len(devs), err)
			}
		}
	})
}
