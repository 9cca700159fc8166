package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certportal/certportal/internal/store"
)

// ExpiryWindows are the windows of certportal_certificates_expiring, with
// their label values: cumulative, as a histogram's buckets are, so an alert
// picks the one window it cares about.
var ExpiryWindows = []struct {
	Label string
	D     time.Duration
}{
	{"1d", 24 * time.Hour},
	{"3d", 72 * time.Hour},
	{"7d", 168 * time.Hour},
	{"30d", 720 * time.Hour},
}

// ExpiryDurations are ExpiryWindows' durations, for store.ExpiryStats.
func ExpiryDurations() []time.Duration {
	out := make([]time.Duration, len(ExpiryWindows))
	for i, w := range ExpiryWindows {
		out[i] = w.D
	}
	return out
}

// inventoryMetrics are the certificate inventory's gauges. They are set
// from counts the database makes (store.ExpiryStats) on a timer, never
// from rows loaded per scrape, so a scrape costs the same at a million
// certificates as at ten.
type inventoryMetrics struct {
	certificates  *prometheus.GaugeVec
	expiring      *prometheus.GaugeVec
	nextExpiry    *prometheus.GaugeVec // no labels: present only while an active certificate exists
	lastRefresh   prometheus.Gauge
	refreshFailed prometheus.Counter
}

func newInventoryMetrics(reg *prometheus.Registry) inventoryMetrics {
	i := inventoryMetrics{
		certificates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certportal_certificates",
			Help: "Certificates in the inventory by status: active (unrevoked, valid), expired (unrevoked, past not_after), revoked.",
		}, []string{"status"}),
		expiring: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certportal_certificates_expiring",
			Help: "Active certificates not yet renewed (their owner holds no newer valid one) that expire within the window (1d, 3d, 7d, 30d; cumulative).",
		}, []string{"within"}),
		nextExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certportal_certificates_next_expiry_timestamp_seconds",
			Help: "The earliest expiry (not_after, Unix time) among active certificates; absent while there is none.",
		}, nil),
		lastRefresh: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certportal_certificates_last_refresh_timestamp_seconds",
			Help: "When the certificate counts above were last computed from the inventory (Unix time); 0 before the first.",
		}),
		refreshFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certportal_certificates_refresh_failures_total",
			Help: "Refreshes of the certificate counts that failed (the store did not answer); the last counts stay.",
		}),
	}
	for _, s := range []string{store.StateActive, store.StateExpired, store.StateRevoked} {
		i.certificates.WithLabelValues(s)
	}
	for _, w := range ExpiryWindows {
		i.expiring.WithLabelValues(w.Label)
	}
	reg.MustRegister(i.certificates, i.expiring, i.nextExpiry, i.lastRefresh, i.refreshFailed)
	return i
}

// Inventory sets the certificate gauges from counts made at at; st.Expiring
// holds one count per ExpiryWindows entry.
func (m *Metrics) Inventory(st store.ExpiryStats, at time.Time) {
	if m == nil {
		return
	}
	i := m.inventory
	i.certificates.WithLabelValues(store.StateActive).Set(float64(st.Active))
	i.certificates.WithLabelValues(store.StateExpired).Set(float64(st.Expired))
	i.certificates.WithLabelValues(store.StateRevoked).Set(float64(st.Revoked))
	for k, w := range ExpiryWindows {
		if k < len(st.Expiring) {
			i.expiring.WithLabelValues(w.Label).Set(float64(st.Expiring[k]))
		}
	}
	if st.NextExpiry.IsZero() {
		i.nextExpiry.Reset()
	} else {
		i.nextExpiry.WithLabelValues().Set(unixSeconds(st.NextExpiry))
	}
	i.lastRefresh.Set(unixSeconds(at))
}

// InventoryFailure counts a refresh of the certificate gauges that failed.
func (m *Metrics) InventoryFailure() {
	if m != nil {
		m.inventory.refreshFailed.Inc()
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }
