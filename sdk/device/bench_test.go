package device

import (
	"context"
	"crypto/ed25519"
	"runtime"
	"sync"
	"testing"
)

// BenchmarkIdleClients measures the memory and goroutines one connected,
// idle MQTT client costs, the number that decides how many simulated
// devices fit in one process. Run with -benchtime=500x or so.
func BenchmarkIdleClients(b *testing.B) {
	broker := startMosquitto(b)
	pub := testKey.Public().(ed25519.PublicKey)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	var connected sync.WaitGroup
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range b.N {
		connected.Add(1)
		var once sync.Once
		cfg := Config{Broker: broker, Product: testProduct, Device: "d" + itoa(i), Secret: testSecret,
			PublicKey: pub, Installer: newMemInstaller("1.0.0"),
			OnEvent: func(e Event) {
				if e.Kind == EventInformed {
					once.Do(connected.Done)
				}
			}}
		c, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
	}
	connected.Wait()
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse)/float64(b.N), "bytes/client")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(b.N), "goroutines/client")
	cancel()
	wg.Wait()
}
