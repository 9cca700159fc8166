package metrics

import "github.com/prometheus/client_golang/prometheus"

// throttleMetrics are the per-address login throttle's: how full its table
// is, and how many attempts it refused only because the table was full.
type throttleMetrics struct {
	entries prometheus.Gauge
	full    prometheus.Counter
}

func newThrottleMetrics(reg *prometheus.Registry) throttleMetrics {
	t := throttleMetrics{
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certportal_login_throttle_entries",
			Help: "Address prefixes this replica's login throttle tracks (at most 100000; expired ones are swept when the table fills).",
		}),
		full: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certportal_login_throttle_table_full_total",
			Help: "Login attempts refused (429) only because the login throttle's address table was full of live windows.",
		}),
	}
	reg.MustRegister(t.entries, t.full)
	return t
}

// LoginThrottleEntries records how many prefixes the throttle tracks.
func (m *Metrics) LoginThrottleEntries(n int) {
	if m != nil {
		m.throttle.entries.Set(float64(n))
	}
}

// LoginThrottleFull counts an attempt refused because the table was full.
func (m *Metrics) LoginThrottleFull() {
	if m != nil {
		m.throttle.full.Inc()
	}
}
