package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
)

// TestMetricsListenApart: with CERTPORTAL_METRICS_LISTEN the metrics are
// served on their own address and the portal's own, which an Ingress
// publishes, answers /metrics with 404 (review 81 F4: the chart's Ingress
// published them to anyone, AppRole expiry and login failure counts
// included).
func TestMetricsListenApart(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	addr := nginxtest.FreeAddr(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_METRICS_LISTEN": addr})
	get := func(u string) (int, string) {
		t.Helper()
		r, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, body := get(p.URL + "/metrics"); code != http.StatusNotFound || strings.Contains(body, "certportal_") {
		t.Errorf("the portal's own address answers /metrics: %d", code)
	}
	if code, body := get("http://" + addr + "/metrics"); code != http.StatusOK || !strings.Contains(body, "certportal_") {
		t.Errorf("metrics address: %d, want 200 with the portal's metrics\n%.300s", code, body)
	}
	for _, path := range []string{"/", "/login", "/healthz"} {
		if code, _ := get("http://" + addr + path); code != http.StatusNotFound {
			t.Errorf("metrics address answers %s with %d, want 404 (metrics only)", path, code)
		}
	}
	if code, _ := get(p.URL + "/login"); code != http.StatusOK {
		t.Errorf("the portal's login page: %d", code)
	}
	// Without the setting, /metrics stays beside the pages, as before.
	q := startPortal(t, v, nil)
	if code, _ := get(q.URL + "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics without CERTPORTAL_METRICS_LISTEN: %d, want 200", code)
	}
}
