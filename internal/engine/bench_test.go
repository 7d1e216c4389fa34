package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/engine/enginetest"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// BenchmarkUpgrade drives b.N devices through a whole push upgrade through
// engine.Devices, as the broker does (a connect, the progress reports the
// SDK sends for a small file, the final inform), from 256 goroutines so
// that the engine batches as it does under a fleet: one op is one device
// upgraded. Besides ns/op and allocs/op it reports the process's CPU time
// per device (cpu-ns/op: user + system, the devices' side included, which
// is small), the figure to compare on a shared machine. The store is
// SQLite unless OTTER_TEST_POSTGRES_URL is set.
func BenchmarkUpgrade(b *testing.B) {
	ctx := context.Background()
	st := storetest.Open(b)
	if err := st.CreateProduct(ctx, &ota.Product{Key: "demo"}); err != nil {
		b.Fatal(err)
	}
	nd := make([]store.NewDevice, b.N)
	for i := range nd {
		nd[i] = store.NewDevice{Product: "demo", Key: fmt.Sprintf("d%d", i), SecretHash: []byte("x"),
			Versions: map[string]string{"default": "1.0.0"}}
	}
	created, err := st.CreateDevices(ctx, nd)
	if err != nil {
		b.Fatal(err)
	}
	fw := signed(ota.Firmware{Product: "demo", Module: "default", Version: "1.1.0", Size: 3, SHA256: sha, BlobKey: "k"})
	if err := st.CreateFirmware(ctx, &fw); err != nil {
		b.Fatal(err)
	}
	down := &chanDownlink{to: make(map[string]chan []byte, len(created))}
	devs := make([]engine.Device, len(created))
	for i, d := range created {
		devs[i] = engine.Device{ID: d.ID, Product: d.Product, Key: d.Key}
		down.to[d.Key] = make(chan []byte, 4)
	}
	e, _ := enginetest.Start(b, engine.Config{Store: st, Downlink: down, Commands: commandKey,
		Logger: slog.New(slog.DiscardHandler), Tick: time.Second})
	for _, d := range devs {
		if err := e.Connected(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	if _, err := e.CreateTask(ctx, ota.TaskSpec{FirmwareID: fw.ID, Mode: ota.ModePush, Target: ota.Target{All: true}}); err != nil {
		b.Fatal(err)
	}
	work := make(chan engine.Device)
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for d := range work {
				if err := upgradeDevice(ctx, e, d, down.to[d.Key]); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for _, d := range devs {
		work <- d
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// upgradeDevice waits for d's upgrade command and answers it as the SDK
// does for a small file.
func upgradeDevice(ctx context.Context, e *engine.Engine, d engine.Device, cmds <-chan []byte) error {
	var u wire.Upgrade
	select {
	case payload := <-cmds:
		m, err := wire.Decode(wire.KindUpgrade, payload)
		if err != nil {
			return err
		}
		u = m.(wire.Upgrade)
	case <-time.After(time.Minute):
		return fmt.Errorf("%s: no upgrade command", d.Key)
	}
	for _, p := range []struct {
		state   wire.State
		percent int
	}{
		{wire.StateDownloading, 0}, {wire.StateDownloading, 50}, {wire.StateDownloading, 100},
		{wire.StateDownloaded, 100}, {wire.StateInstalling, 100}, {wire.StateRebooting, 100},
	} {
		if _, err := e.Progress(ctx, d, wire.Progress{Job: u.Job, Attempt: u.Attempt, State: p.state, Percent: p.percent}); err != nil {
			return err
		}
	}
	_, err := e.Inform(ctx, d, wire.Inform{Modules: map[string]string{"default": u.Version}})
	return err
}

// chanDownlink hands each device's upgrade commands to its channel.
type chanDownlink struct{ to map[string]chan []byte }

func (c *chanDownlink) Send(_, device, kind string, payload []byte) {
	if kind == string(wire.KindUpgrade) {
		select {
		case c.to[device] <- payload:
		default:
		}
	}
}

// cpuTime is the process's user + system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
