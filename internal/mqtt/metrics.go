package mqtt

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otter-ota/otter/sdk/wire"
)

// metrics of the broker. Labels take values from small fixed sets (kinds,
// codes, reasons), never a device.
type metrics struct {
	connected    prometheus.Gauge
	connects     prometheus.Counter
	authFailures *prometheus.CounterVec
	uplinks      *prometheus.CounterVec
	uplinkErrors *prometheus.CounterVec
	uplinkTime   prometheus.Histogram
	downlinks    *prometheus.CounterVec
	aclDenied    *prometheus.CounterVec
	revoked      prometheus.Counter
}

// Reasons a CONNECT is refused, the label of otter_mqtt_auth_failures_total.
const (
	refusedUsername    = "bad_username"   // not {product}/{device}
	refusedUnknown     = "unknown_device" // no such device
	refusedSecret      = "wrong_secret"
	refusedWill        = "will_topic"  // a will outside the device's tree
	refusedUnavailable = "unavailable" // the store failed
	refusedTooMany     = "too_many_connections"
	// EnOS logins (docs/protocol-enos.md).
	refusedSignature = "bad_signature"    // the password is not the login's signature
	refusedClock     = "clock_skew"       // the login's timestamp is too far from the server's clock
	refusedNotEnOS   = "not_enos_product" // the product does not take EnOS logins
	refusedNoSealed  = "no_sealed_secret" // the device's secret predates the switch to EnOS: rotate it
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otter_mqtt_connected_clients", Help: "Device connections open on the embedded broker.",
		}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_mqtt_connects_total", Help: "Device connections accepted by the embedded broker.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_mqtt_auth_failures_total", Help: "Connections refused at CONNECT, by reason.",
		}, []string{"reason"}),
		uplinks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_mqtt_uplinks_total", Help: "Device messages handled, by kind.",
		}, []string{"kind"}),
		uplinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_mqtt_uplink_errors_total", Help: "Device messages refused or not stored, by error code.",
		}, []string{"code"}),
		uplinkTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "otter_mqtt_uplink_seconds", Help: "Time from a device message to its acknowledgement (the engine's commit).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		downlinks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_mqtt_downlinks_total", Help: "Messages published to devices, by kind.",
		}, []string{"kind"}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_mqtt_acl_denied_total", Help: "Publishes and subscriptions outside a device's own topics, denied.",
		}, []string{"action"}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_mqtt_revoked_sessions_total", Help: "Device connections closed because the device's credentials changed (secret rotated, device deleted).",
		}),
	}
	m.initLabels()
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connected, m.connects, m.authFailures, m.uplinks,
		m.uplinkErrors, m.uplinkTime, m.downlinks, m.aclDenied, m.revoked} {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if errors.As(err, &dup) {
				return nil, fmt.Errorf("mqtt metrics: registered twice (one registry per broker): %w", err)
			}
			return nil, fmt.Errorf("mqtt metrics: %w", err)
		}
	}
	return m, nil
}

// initLabels makes every expected series exist at 0, so that rates and
// alerts work before the first event.
func (m *metrics) initLabels() {
	for _, r := range []string{refusedUsername, refusedUnknown, refusedSecret, refusedWill, refusedUnavailable, refusedTooMany,
		refusedSignature, refusedClock, refusedNotEnOS, refusedNoSealed} {
		m.authFailures.WithLabelValues(r)
	}
	for _, k := range wire.UplinkKinds {
		m.uplinks.WithLabelValues(string(k))
	}
	for _, c := range []string{wire.CodeMalformed, wire.CodeTooLarge, wire.CodeUnknownTopic, wire.CodeUnavailable} {
		m.uplinkErrors.WithLabelValues(c)
	}
	for _, k := range wire.DownlinkKinds {
		m.downlinks.WithLabelValues(string(k))
	}
	m.aclDenied.WithLabelValues("publish")
	m.aclDenied.WithLabelValues("subscribe")
}
