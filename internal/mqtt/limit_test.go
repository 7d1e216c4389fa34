package mqtt

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otter-ota/otter/internal/store/storetest"
)

// A device holds at most MaxConnectionsPerDevice connections: clones or
// a storm of half-open reconnections are refused with "quota exceeded",
// other devices are not affected, a takeover of an open session is
// admitted, and an ended connection frees its slot.
func TestConnectionsPerDeviceAreCapped(t *testing.T) {
	e := &env{st: storetest.Open(t), devices: newFakeDevices(), secrets: map[string]string{},
		ids: map[string]int64{}, reg: prometheus.NewRegistry()}
	e.createDevices(t, "a", "b")
	e.b = startBroker(t, Config{Addr: "127.0.0.1:0", Devices: e.devices, Credentials: e.st, Metrics: e.reg,
		MaxConnectionsPerDevice: 2})
	clone := connectOpts{clientID: "three", user: "p/a", password: e.secrets["a"]}

	first := e.connect(t, "a", "one")
	e.connect(t, "a", "two")
	if code, d := dial(t, e.b.Addr(), clone); d != nil || code != v5QuotaExceeded {
		t.Fatalf("third connection of a device: CONNACK 0x%02x, want 0x%02x", code, v5QuotaExceeded)
	}
	if got := testutil.ToFloat64(e.b.metrics.authFailures.WithLabelValues(refusedTooMany)); got != 1 {
		t.Errorf("refusals counted: %v, want 1", got)
	}
	e.connect(t, "b", "one")
	e.connect(t, "a", "two") // takes over "two": a reconnection, not a new connection

	if err := first.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		code, d := dial(t, e.b.Addr(), clone)
		if d != nil {
			break
		}
		if code != v5QuotaExceeded || time.Now().After(deadline) {
			t.Fatalf("after one connection ended: CONNACK 0x%02x, want a free slot", code)
		}
	}
}
