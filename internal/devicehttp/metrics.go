package devicehttp

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the device HTTP interface. Labels are kinds and statuses,
// never devices or firmware, so the number of series stays fixed.
type metrics struct {
	requests    *prometheus.CounterVec   // kind, status
	duration    *prometheus.HistogramVec // kind
	inFlight    prometheus.Gauge
	downloads   *prometheus.CounterVec // status: 200/206 are downloads started
	bytes       prometheus.Counter
	dlInFlight  prometheus.Gauge
	credLookups *prometheus.CounterVec // result: hit, miss
	// The counters every download or login touches, resolved once: a
	// lookup by label values costs a hash of the values and a lock.
	credHit, credMiss prometheus.Counter
	downloadsBy       map[int]prometheus.Counter // by the statuses downloads usually end with
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_device_http_requests_total",
			Help: "Device HTTP API requests by message kind (upgrade: polls) and status.",
		}, []string{"kind", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "otter_device_http_request_duration_seconds",
			Help:    "Device HTTP API request duration by message kind.",
			Buckets: prometheus.DefBuckets,
		}, []string{"kind"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otter_device_http_in_flight",
			Help: "Device HTTP API requests being handled.",
		}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_download_requests_total",
			Help: "Firmware download requests by status; 200 and 206 are downloads started, 307 downloads redirected to the blob store (--download-redirect), 401 and 403 refused URLs.",
		}, []string{"status"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_download_bytes_total",
			Help: "Firmware bytes sent to devices.",
		}),
		dlInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otter_downloads_in_flight",
			Help: "Firmware downloads being served.",
		}),
		credLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_device_credential_lookups_total",
			Help: "Device credential lookups of the HTTP interface, answered from memory (hit) or the store (miss).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.downloads, m.bytes, m.dlInFlight, m.credLookups} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("devicehttp: register metrics (one handler per registry): %w", err)
		}
	}
	m.credHit, m.credMiss = m.credLookups.WithLabelValues("hit"), m.credLookups.WithLabelValues("miss")
	m.downloadsBy = map[int]prometheus.Counter{}
	for _, code := range []int{200, 206, 304, 307, 401, 403, 404, 412, 416, 503} {
		m.downloadsBy[code] = m.downloads.WithLabelValues(strconv.Itoa(code))
	}
	return m, nil
}

func (m *metrics) credLookup(hit bool) {
	if hit {
		m.credHit.Inc()
	} else {
		m.credMiss.Inc()
	}
}

// download counts a download request that ended with status code.
func (m *metrics) download(code int) {
	if c, ok := m.downloadsBy[code]; ok {
		c.Inc()
		return
	}
	m.downloads.WithLabelValues(strconv.Itoa(code)).Inc()
}
