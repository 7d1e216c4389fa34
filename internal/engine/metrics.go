package engine

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus series; none has a label per device
// or per task, so their number stays fixed whatever the fleet size.
type metrics struct {
	deviceMessages prometheus.Counter
	downlinks      prometheus.Counter
	commitSeconds  prometheus.Histogram
	jobsStarted    prometheus.Counter
	jobTransitions *prometheus.CounterVec
	activeTasks    prometheus.Gauge
	readYield      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deviceMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_engine_device_messages_total", Help: "Device messages applied by the engine.",
		}),
		downlinks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_engine_downlinks_total", Help: "Upgrade commands, offers and cancels sent to devices.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "otter_engine_commit_seconds", Help: "Time to write one batch of job changes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		jobsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_engine_jobs_started_total", Help: "Jobs moved from queued to notified or offered.",
		}),
		jobTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otter_engine_job_transitions_total", Help: "Job transitions by new state.",
		}, []string{"state"}),
		activeTasks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otter_engine_active_tasks", Help: "Tasks scheduled, running or paused.",
		}),
		readYield: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otter_engine_read_yield_seconds_total", Help: "Time job starts waited for the operator's reads in flight.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.deviceMessages, m.downlinks, m.commitSeconds, m.jobsStarted, m.jobTransitions, m.activeTasks, m.readYield} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
