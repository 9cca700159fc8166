package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Nginx is what `certportal nginx-certs --watch` exposes on its own metrics
// listener: when the files it keeps for Nginx stop working (the server
// certificate's expiry, the CRL's next update), and whether it still keeps
// them. A separate registry, since the watcher is its own process.
type Nginx struct {
	reg            *prometheus.Registry
	certExpiry     *prometheus.GaugeVec // no labels: absent until the first good sync
	crlNextUpdate  *prometheus.GaugeVec
	lastSync       prometheus.Gauge
	syncFailures   prometheus.Counter
	reloadFailures prometheus.Counter
}

// NewNginx registers the watcher's collectors.
func NewNginx() *Nginx {
	n := &Nginx{
		reg: prometheus.NewRegistry(),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certportal_nginx_cert_expiry_timestamp_seconds",
			Help: "When the Nginx server certificate in the watched directory expires (not_after, Unix time); absent before the first good sync.",
		}, nil),
		crlNextUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certportal_nginx_crl_next_update_timestamp_seconds",
			Help: "The earliest next-update time of the CRLs written for Nginx (Unix time): after it Nginx refuses every client certificate; absent before the first good sync.",
		}, nil),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certportal_nginx_last_sync_success_timestamp_seconds",
			Help: "When the watcher last brought the Nginx files up to date with Vault (Unix time); 0 before the first.",
		}),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certportal_nginx_sync_failures_total",
			Help: "Syncs with Vault that failed (the files from the last good one stay).",
		}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certportal_nginx_reload_failures_total",
			Help: "Runs of the reload command that failed.",
		}),
	}
	n.reg.MustRegister(n.certExpiry, n.crlNextUpdate, n.lastSync, n.syncFailures, n.reloadFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return n
}

// Handler serves the registry in the Prometheus text format.
func (n *Nginx) Handler() http.Handler {
	return promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{})
}

// Synced records a good sync at at: the server certificate's expiry and the
// CRL's next update now in the directory (zero: unknown, left out).
func (n *Nginx) Synced(certNotAfter, crlNextUpdate, at time.Time) {
	if n == nil {
		return
	}
	setOrDrop(n.certExpiry, certNotAfter)
	setOrDrop(n.crlNextUpdate, crlNextUpdate)
	n.lastSync.Set(unixSeconds(at))
}

// SyncFailed counts a failed sync.
func (n *Nginx) SyncFailed() {
	if n != nil {
		n.syncFailures.Inc()
	}
}

// ReloadFailed counts a failed reload.
func (n *Nginx) ReloadFailed() {
	if n != nil {
		n.reloadFailures.Inc()
	}
}

func setOrDrop(g *prometheus.GaugeVec, t time.Time) {
	if t.IsZero() {
		g.Reset()
		return
	}
	g.WithLabelValues().Set(unixSeconds(t))
}
