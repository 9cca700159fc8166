package metrics

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// approleMetrics are the portal's own AppRole secret id: when the one it
// logs in with expires, and how rotations went. The expiry is exported only
// once known, so an alert on it never fires on a portal that has not looked
// yet.
type approleMetrics struct {
	mu        sync.Mutex
	known     bool
	expiry    float64
	expiryDsc *prometheus.Desc
	rotations *prometheus.CounterVec
}

func newApproleMetrics(reg *prometheus.Registry) *approleMetrics {
	a := &approleMetrics{
		expiryDsc: prometheus.NewDesc("certportal_approle_secret_id_expiry_timestamp_seconds",
			"When the AppRole secret id this replica logs in with expires (Unix time); +Inf when it never expires, 0 when Vault no longer knows it (expired or destroyed). Absent until the first lookup.",
			nil, nil),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certportal_approle_secret_id_rotations_total",
			Help: "Secret id rotations by this replica, by result: rotated, failed, or not_writable (inline or read-only secret: it can only alert).",
		}, []string{"result"}),
	}
	for _, r := range []string{"rotated", "failed", "not_writable"} {
		a.rotations.WithLabelValues(r)
	}
	reg.MustRegister(a, a.rotations)
	return a
}

func (a *approleMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- a.expiryDsc }

func (a *approleMetrics) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	known, v := a.known, a.expiry
	a.mu.Unlock()
	if known {
		ch <- prometheus.MustNewConstMetric(a.expiryDsc, prometheus.GaugeValue, v)
	}
}

// SecretIDExpiry records when the secret id the portal logs in with
// expires: zero never, and known false when Vault does not know it.
func (m *Metrics) SecretIDExpiry(expires time.Time, known bool) {
	if m == nil {
		return
	}
	v := 0.0
	switch {
	case !known:
	case expires.IsZero():
		v = math.Inf(1)
	default:
		v = float64(expires.Unix())
	}
	m.approle.mu.Lock()
	m.approle.known, m.approle.expiry = true, v
	m.approle.mu.Unlock()
}

// SecretIDRotation counts one rotation attempt: rotated, failed or
// not_writable.
func (m *Metrics) SecretIDRotation(result string) {
	if m == nil {
		return
	}
	switch result {
	case "rotated", "failed", "not_writable":
	default:
		result = "failed"
	}
	m.approle.rotations.WithLabelValues(result).Inc()
}
