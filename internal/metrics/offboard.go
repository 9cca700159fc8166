package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// offboardMetrics are the offboarding sweep's: whether it is holding (a
// suspicious user list it refused to act on), when it last completed, and
// how each sweep ended.
type offboardMetrics struct {
	held    prometheus.Gauge
	lastRun prometheus.Gauge
	sweeps  *prometheus.CounterVec
}

func newOffboardMetrics(reg *prometheus.Registry) offboardMetrics {
	o := offboardMetrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certportal_offboard_held",
			Help: "1 while an offboarding hold is in force (empty or unreadable user list, or more revocations than the limits allow) until a sweep completes unheld or an operator confirms; 0 otherwise. Every replica reports the hold, whichever of them or of the cron runs swept: alert on max().",
		}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certportal_offboard_last_sweep_timestamp_seconds",
			Help: "When this replica last completed an offboarding sweep (held or not), as a Unix time; 0 before the first.",
		}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certportal_offboard_sweeps_total",
			Help: "Offboarding sweeps by result: ok, held, failed or skipped (another replica held the lock).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "held", "failed", "skipped"} {
		o.sweeps.WithLabelValues(r)
	}
	reg.MustRegister(o.held, o.lastRun, o.sweeps)
	return o
}

// OffboardSweep records how a sweep ended; result is ok, held, failed or
// skipped. A held sweep raises certportal_offboard_held, an ok one lowers
// it; after a skipped or failed one the caller says with OffboardHeld
// what the trail shows.
func (m *Metrics) OffboardSweep(result string, at time.Time) {
	if m == nil {
		return
	}
	m.offboard.sweeps.WithLabelValues(result).Inc()
	switch result {
	case "held":
		m.offboard.held.Set(1)
	case "ok":
		m.offboard.held.Set(0)
	}
	if result == "ok" || result == "held" {
		m.offboard.lastRun.Set(float64(at.Unix()))
	}
}

// OffboardHeld sets certportal_offboard_held from the shared state (the
// trail's current hold) when this replica's own sweep did not decide it:
// another replica or a cron run held the lock, or the sweep failed after
// ending a hold. Otherwise a replica that keeps losing the lock would
// report a hold that another one ended, and the alert would not clear.
func (m *Metrics) OffboardHeld(held bool) {
	if m == nil {
		return
	}
	v := 0.0
	if held {
		v = 1
	}
	m.offboard.held.Set(v)
}
