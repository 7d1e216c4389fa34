package brokerclient

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/sdk/wire"
)

// Metrics are the external broker client's Prometheus series. They outlive
// a Client: a replica makes them once and hands them to the client of each
// of its terms as the scheduling replica. Labels take values from the
// message kinds only, never a device.
type Metrics struct {
	connected     prometheus.Gauge
	reconnects    prometheus.Counter
	uplinks       *prometheus.CounterVec
	redelivered   prometheus.Counter
	downlinks     *prometheus.CounterVec
	publishErrors prometheus.Counter
}

// NewMetrics makes the series and registers them with reg (none when reg
// is nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otter_broker_connected",
			Help: "1 while this replica is connected to the external MQTT broker and subscribed to the device uplinks, 0 otherwise (only the scheduling replica connects).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_broker_reconnects_total",
			Help: "Connections to the external MQTT broker re-established after a loss.",
		}),
		uplinks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_broker_uplinks_total",
			Help: "Device messages taken from the external MQTT broker and acknowledged once handled (stored, refused, or of an unknown device), by kind.",
		}, []string{"kind"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_broker_redelivered_total",
			Help: "Device messages the external MQTT broker delivered again (DUP flag: a replica had not acknowledged them); the engine applies a repeat without a second effect.",
		}),
		downlinks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_broker_downlinks_total",
			Help: "Messages published to devices through the external MQTT broker and acknowledged by it, by kind.",
		}, []string{"kind"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_broker_publish_errors_total",
			Help: "Messages to devices the external MQTT broker did not take (not connected, refused, or no PUBACK in time); the engine sends commands again.",
		}),
	}
	for _, k := range append(append([]wire.Kind{}, wire.UplinkKinds...), wire.KindPresence) {
		m.uplinks.WithLabelValues(string(k))
	}
	for _, k := range wire.DownlinkKinds {
		m.downlinks.WithLabelValues(string(k))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connected, m.reconnects, m.uplinks, m.redelivered, m.downlinks, m.publishErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("broker client metrics: %w", err)
		}
	}
	return m, nil
}
