package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestInventoryGauges(t *testing.T) {
	m := New()
	before := scrape(t, m)
	for _, want := range []string{`certportal_certificates{status="active"} 0`, `certportal_certificates_expiring{within="30d"} 0`,
		"certportal_certificates_last_refresh_timestamp_seconds 0"} {
		if !strings.Contains(before, want+"\n") {
			t.Errorf("before the first refresh: no %q", want)
		}
	}
	// No active certificate, no next expiry: an alert on it must not see 0 (1970).
	if strings.Contains(before, "certportal_certificates_next_expiry_timestamp_seconds ") {
		t.Error("next expiry exported with no active certificate")
	}
	at := time.Unix(1_800_000_000, 0)
	m.Inventory(store.ExpiryStats{Active: 7, Expired: 2, Revoked: 1, Expiring: []int{1, 2, 3, 4}, NextExpiry: at.Add(90 * time.Minute)}, at)
	got := scrape(t, m)
	for _, want := range []string{`certportal_certificates{status="active"} 7`, `certportal_certificates{status="expired"} 2`,
		`certportal_certificates{status="revoked"} 1`, `certportal_certificates_expiring{within="1d"} 1`,
		`certportal_certificates_expiring{within="3d"} 2`, `certportal_certificates_expiring{within="7d"} 3`,
		`certportal_certificates_expiring{within="30d"} 4`, "certportal_certificates_next_expiry_timestamp_seconds 1.8000054e+09",
		"certportal_certificates_last_refresh_timestamp_seconds 1.8e+09"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	m.Inventory(store.ExpiryStats{Expiring: []int{0, 0, 0, 0}}, at)
	if strings.Contains(scrape(t, m), "certportal_certificates_next_expiry_timestamp_seconds ") {
		t.Error("next expiry still exported after the last active certificate went")
	}
}

func TestNotifyScheduled(t *testing.T) {
	m := New()
	if s := scrape(t, m); strings.Contains(s, "certportal_notify_last_success_timestamp_seconds ") || strings.Contains(s, "certportal_notifications_total{") {
		t.Fatal("reminder series exported while reminders are off")
	}
	m.NotifyScheduled()
	s := scrape(t, m)
	for _, want := range []string{"certportal_notify_last_success_timestamp_seconds 0", `certportal_notifications_total{channel="email",result="failed"} 0`,
		`certportal_notifications_total{channel="helpdesk",result="unknown"} 0`} {
		if !strings.Contains(s, want+"\n") {
			t.Errorf("no %q once reminders are scheduled", want)
		}
	}
	if n := strings.Count(s, "certportal_notifications_total{"); n != 15 {
		t.Errorf("%d notification series, want 15 (3 channels x 5 results)", n)
	}
}
