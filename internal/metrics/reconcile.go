package metrics

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reconcileMetrics are the background reconciliation's: what it last saw
// issued around the portal, whether it is holding, when it last completed
// and how each run ended.
type reconcileMetrics struct {
	vaultOnly prometheus.Gauge
	held      prometheus.Gauge
	heldScope *prometheus.GaugeVec
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
			Help: "1 while a background reconciliation's hold of automatic revocations (of either scope: see certportal_reconcile_held_scope) is in force, on every replica (read from the trail when this replica's own run lost the lock or failed); 0 otherwise.",
		}),
		heldScope: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certportal_reconcile_held_scope",
			Help: "1 for each scope of the hold in force, 0 for the others: employees (employees with more than CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX certificates issued around the portal are held and named, everyone else's are revoked), unattributed (client certificates for addresses in the users' domain that name no employee are held, never revoked automatically; may be 1 with employees) or all (the others' came to more than CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX: nothing revoked, check the database). All 0 while no hold is in force.",
		}, []string{"scope"}),
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
	for _, s := range holdScopes {
		r.heldScope.WithLabelValues(s)
	}
	reg.MustRegister(r.vaultOnly, r.held, r.heldScope, r.lastRun, r.runs)
	return r
}

// holdScopes are the values of certportal_reconcile_held_scope's label, as
// the reconcile.held event's scope names them.
var holdScopes = []string{"employees", "unattributed", "all"}

// ReconcileRun records how a background reconciliation ended (ok, held,
// failed or skipped) and, for a completed one, how many vault_only
// certificates it saw. Whether a hold is in force is ReconcileHeld's.
func (m *Metrics) ReconcileRun(result string, vaultOnly int, at time.Time) {
	if m == nil {
		return
	}
	m.reconcile.runs.WithLabelValues(result).Inc()
	if result == "ok" || result == "held" {
		m.reconcile.vaultOnly.Set(float64(vaultOnly))
		m.reconcile.lastRun.Set(float64(at.Unix()))
	}
}

// ReconcileHeld sets certportal_reconcile_held and
// certportal_reconcile_held_scope to the hold in force: scope "employees",
// "unattributed", both joined by "+", or "all"; "" for none.
func (m *Metrics) ReconcileHeld(scope string) {
	if m == nil {
		return
	}
	parts := strings.Split(scope, "+")
	held := 0.0
	for _, s := range holdScopes {
		v := 0.0
		if slices.Contains(parts, s) {
			v, held = 1, 1
		}
		m.reconcile.heldScope.WithLabelValues(s).Set(v)
	}
	m.reconcile.held.Set(held)
}
