// Package metrics is what certportal exposes at /metrics for Prometheus:
// request rates and latencies by route, the certificate lifecycle, audit
// write failures and Vault's issuance latency, plus the Go runtime and
// process collectors. Labels are bounded by construction — route patterns,
// status codes, encryption profiles, revocation reasons — and never carry a
// username, serial or anything secret.
package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the portal's collectors in a registry of its own. A nil
// *Metrics is valid and records nothing, for code run without a server.
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	issued        *prometheus.CounterVec
	revoked       *prometheus.CounterVec
	auditFailures prometheus.Counter
	vaultIssue    prometheus.Histogram
	notifications *prometheus.CounterVec
	notifyLastRun *prometheus.GaugeVec // no labels: present only while reminders are on (NotifyScheduled)
	offboard      offboardMetrics
	throttle      throttleMetrics
	inventory     inventoryMetrics
	approle       *approleMetrics
	reconcile     reconcileMetrics
}

// New registers every collector.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certportal_http_requests_total",
			Help: "HTTP requests by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "certportal_http_request_duration_seconds",
			Help:    "HTTP request latency by method and route pattern.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certportal_certificates_issued_total",
			Help: "Certificates issued, recorded and handed out, by .p12 encryption.",
		}, []string{"encryption"}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certportal_certificates_revoked_total",
			Help: "Certificates revoked through the portal, by reason.",
		}, []string{"reason"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certportal_audit_write_failures_total",
			Help: "Audit writes the store refused; each failed the action it recorded (fail closed).",
		}),
		vaultIssue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "certportal_vault_issue_duration_seconds",
			Help:    "Latency of Vault's pki issue call, success or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certportal_notifications_total",
			Help: "Expiry reminders by channel (email, webhook, helpdesk) and result (sent, retry, failed, cancelled, unknown).",
		}, []string{"channel", "result"}),
		notifyLastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certportal_notify_last_success_timestamp_seconds",
			Help: "When the reminder scheduler last finished a pass without error (Unix time); 0 before the first; absent while reminders are off.",
		}, nil),
	}
	m.reg.MustRegister(m.requests, m.duration, m.issued, m.revoked, m.auditFailures, m.vaultIssue, m.notifications, m.notifyLastRun,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.offboard = newOffboardMetrics(m.reg)
	m.throttle = newThrottleMetrics(m.reg)
	m.inventory = newInventoryMetrics(m.reg)
	m.approle = newApproleMetrics(m.reg)
	m.reconcile = newReconcileMetrics(m.reg)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Request records one HTTP request. route is the matched pattern, such as
// "/certificates/{serial}/revoke"; "" (no route matched) is counted as
// "unmatched" so that scanners cannot mint label values.
func (m *Metrics) Request(method, route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		method = "other"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

// Issued counts a certificate handed out.
func (m *Metrics) Issued(encryption string) {
	if m != nil {
		m.issued.WithLabelValues(encryption).Inc()
	}
}

// Revoked counts a revocation recorded by the portal.
func (m *Metrics) Revoked(reason string) {
	if m != nil {
		m.revoked.WithLabelValues(reason).Inc()
	}
}

// AuditFailure counts an audit write the store refused.
func (m *Metrics) AuditFailure() {
	if m != nil {
		m.auditFailures.Inc()
	}
}

// VaultIssue records how long Vault took to answer an issue call.
func (m *Metrics) VaultIssue(d time.Duration) {
	if m != nil {
		m.vaultIssue.Observe(d.Seconds())
	}
}

// Notification counts one reminder outcome. Both labels come from fixed
// sets in internal/notify; anything else is counted as "other".
func (m *Metrics) Notification(channel, result string) {
	if m == nil {
		return
	}
	if !slices.Contains(notifyChannels, channel) {
		channel = "other"
	}
	if !slices.Contains(notifyResults, result) {
		result = "other"
	}
	m.notifications.WithLabelValues(channel, result).Inc()
}

// notifyChannels and notifyResults are the label values Notification keeps.
var (
	notifyChannels = []string{"email", "webhook", "helpdesk"}
	notifyResults  = []string{"sent", "retry", "failed", "cancelled", "unknown"}
)

// NotifyScheduled says the reminder scheduler runs in this process: its
// last-success time appears (0 until the first pass), so "stalled" can be
// alerted on without firing for portals with reminders off, and every
// channel and result starts at 0, so increase() sees the first failure.
func (m *Metrics) NotifyScheduled() {
	if m == nil {
		return
	}
	m.notifyLastRun.WithLabelValues()
	for _, c := range notifyChannels {
		for _, r := range notifyResults {
			m.notifications.WithLabelValues(c, r)
		}
	}
}

// NotifyRun records a reminder pass that finished without error.
func (m *Metrics) NotifyRun(at time.Time) {
	if m != nil {
		m.notifyLastRun.WithLabelValues().Set(float64(at.UnixNano()) / 1e9)
	}
}
