package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reconcileMetrics are the background reconciliation's: what it last saw
// issued around the portal, whether it is holding, when it last completed
// and how each run ended.
type reconcileMetrics struct {
	vaultOnly prometheus.Gauge
	held      prometheus.Gauge
	lastRun   prometheus.Gauge
	runs      *prometheus.CounterVec
}

func newReconcileMetrics(reg *prometheus.Registry) reconcileMetrics {
	r := reconcileMetrics{
		vaultOnly: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certportal_reconcile_vault_only",
			Help: "Unrevoked, unexpired certificates in Vault that the inventory does not know (issued around the portal), as this replica's last background reconciliation saw them.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certportal_reconcile_held",
			Help: "1 while a background reconciliation's hold of automatic revocations (an employee with more than CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX certificates issued around the portal, or more employees than that: then all) is in force, on every replica (read from the trail when this replica's own run lost the lock or failed); 0 otherwise.",
		}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certportal_reconcile_last_run_timestamp_seconds",
			Help: "When this replica last completed a background reconciliation (held or not), as a Unix time; 0 before the first.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certportal_reconcile_runs_total",
			Help: "Background reconciliations by result: ok, held, failed or skipped (another replica held the lock).",
		}, []string{"result"}),
	}
	for _, res := range []string{"ok", "held", "failed", "skipped"} {
		r.runs.WithLabelValues(res)
	}
	reg.MustRegister(r.vaultOnly, r.held, r.lastRun, r.runs)
	return r
}

// ReconcileRun records how a background reconciliation ended (ok, held,
// failed or skipped) and, for a completed one, how many vault_only
// certificates it saw.
func (m *Metrics) ReconcileRun(result string, vaultOnly int, at time.Time) {
	if m == nil {
		return
	}
	m.reconcile.runs.WithLabelValues(result).Inc()
	switch result {
	case "held":
		m.reconcile.held.Set(1)
	case "ok":
		m.reconcile.held.Set(0)
	}
	if result == "ok" || result == "held" {
		m.reconcile.vaultOnly.Set(float64(vaultOnly))
		m.reconcile.lastRun.Set(float64(at.Unix()))
	}
}

// ReconcileHeld sets certportal_reconcile_held from the shared state (the
// trail) when this replica's own run did not decide it.
func (m *Metrics) ReconcileHeld(held bool) {
	if m == nil {
		return
	}
	if held {
		m.reconcile.held.Set(1)
	} else {
		m.reconcile.held.Set(0)
	}
}
