package brokerclient_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/internal/brokerclient"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/sdk/wire"
)

// metric returns the value of the series name (with label value label,
// "" for none) in reg; -1 when there is no such series.
func metric(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// awaitMetric waits until the series has value want.
func awaitMetric(t *testing.T, reg *prometheus.Registry, name, label string, want float64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := metric(t, reg, name, label)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v", name, label, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) dialWith(t *testing.T, devs engine.Devices, id string, m *brokerclient.Metrics) *brokerclient.Client {
	t.Helper()
	c, err := brokerclient.Dial(testContext(t), brokerclient.Config{
		URL: r.b.URL(), Username: serviceUser, Password: servicePassword, ClientID: id,
		Devices: devs, Resolver: registry{"demo/d1": true}, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The series every replica exposes with --broker: connected, reconnects,
// uplinks and downlinks by kind, and downlinks the broker did not take.
func TestMetricsCountConnectionsAndMessages(t *testing.T) {
	r := newRig(t)
	reg := prometheus.NewRegistry()
	m, err := brokerclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"otter_broker_reconnects_total", "otter_broker_redelivered_total", "otter_broker_publish_errors_total"} {
		if v := metric(t, reg, name, ""); v != 0 {
			t.Fatalf("%s = %v before any client, want 0", name, v)
		}
	}
	if v := metric(t, reg, "otter_broker_uplinks_total", "inform"); v != 0 {
		t.Fatalf("otter_broker_uplinks_total{inform} = %v before any client, want a series at 0", v)
	}
	devs := newDevices(1)
	c := r.dialWith(t, devs, "otter-metrics", m)
	defer c.Close(context.Background())
	awaitMetric(t, reg, "otter_broker_connected", "", 1)

	d := r.device(t)
	d.publish(t, wire.Inform{Modules: map[string]string{"default": "1.0.0"}}) // refused once, then stored: one uplink
	d.publish(t, wire.Request{Module: "default"})
	<-d.received
	awaitMetric(t, reg, "otter_broker_uplinks_total", "inform", 1)
	awaitMetric(t, reg, "otter_broker_uplinks_total", "request", 1)
	awaitMetric(t, reg, "otter_broker_downlinks_total", "reply", 1)

	// The broker goes away: not connected; back: one reconnect.
	r.b.Kill()
	awaitMetric(t, reg, "otter_broker_connected", "", 0)
	c.Send("demo", "d1", string(wire.KindUpgrade), []byte(`{}`))
	awaitMetric(t, reg, "otter_broker_publish_errors_total", "", 1)
	r.b.Resume(t)
	awaitMetric(t, reg, "otter_broker_connected", "", 1)
	awaitMetric(t, reg, "otter_broker_reconnects_total", "", 1)

	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := metric(t, reg, "otter_broker_connected", ""); v != 0 {
		t.Fatalf("otter_broker_connected = %v after Close, want 0", v)
	}
}

// stuck holds every inform until its context ends: the message is never
// stored, so never acknowledged.
type stuck struct {
	*devices
	held atomic.Int32
}

func (s *stuck) Inform(ctx context.Context, _ engine.Device, _ wire.Inform) (*engine.Answer, error) {
	s.held.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// A replica that loses the lead abandons its session: what it held
// unacknowledged, and what devices send meanwhile, wait in the broker for
// the next client under the same id, which counts the held one as
// redelivered.
func TestAnAbandonedSessionKeepsItsUplinksForTheNext(t *testing.T) {
	r := newRig(t)
	reg := prometheus.NewRegistry()
	m, err := brokerclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	first := &stuck{devices: newDevices(0)}
	c := r.dialWith(t, first, "otter-abandon", m)
	d := r.device(t)
	d.publish(t, wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	deadline := time.Now().Add(waitLimit)
	for first.held.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first client never got the inform")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Abandon(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(); err == nil {
		t.Fatal("an abandoned client says it is ready")
	}
	// Still subscribed in the session: the broker takes the message (0x00,
	// not 0x10 "no matching subscribers") and keeps it.
	if code := d.publish(t, wire.Request{Module: "default"}); code != 0 {
		t.Fatalf("PUBACK 0x%02x while the session is abandoned, want 0", code)
	}
	next := newDevices(0)
	c2 := r.dialWith(t, next, "otter-abandon", m)
	defer c2.Close(context.Background())
	// Handled by several workers at once: in any order.
	next.awaitAnyOrder(t, "connected d1", "inform d1 1.0.0", "request d1")
	// The held inform comes again flagged as a duplicate. The request may
	// be flagged too: Mosquitto marks a queued message a duplicate when it
	// had begun to send it to the old connection before it saw it close.
	if v := metric(t, reg, "otter_broker_redelivered_total", ""); v < 1 || v > 2 {
		t.Fatalf("otter_broker_redelivered_total = %v, want 1 (the held inform) or 2 (and the request)", v)
	}
	awaitMetric(t, reg, "otter_broker_uplinks_total", "inform", 1)
}

// awaitAnyOrder waits until the calls are want in any order.
func (d *devices) awaitAnyOrder(t *testing.T, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	deadline := time.After(waitLimit)
	for {
		d.mu.Lock()
		got := slices.Sorted(slices.Values(d.calls))
		d.mu.Unlock()
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) {
			t.Fatalf("engine calls %q, want %q in any order", got, want)
		}
		select {
		case <-d.changed:
		case <-deadline:
			t.Fatalf("engine calls %q, want %q in any order", got, want)
		}
	}
}
