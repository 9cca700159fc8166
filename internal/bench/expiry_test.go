package bench

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store/sqlite"
)

// BenchmarkExpiryMetrics: the counts behind the certificate metrics
// (store.ExpiryStats, which serve refreshes every minute) over 1,000,000
// inventory rows in SQLite. Bar: under 2 s (it runs once a minute), memory flat (nothing but the
// counts leaves the database).
func BenchmarkExpiryMetrics(b *testing.B) {
	path := filepath.Join(b.TempDir(), "certportal.db")
	now := time.Now()
	fillCertificates(b, path, reminderCerts, now)
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	windows := []time.Duration{24 * time.Hour, 72 * time.Hour, 168 * time.Hour, 720 * time.Hour}
	runtime.GC()
	resetPeakRSS()
	b.ResetTimer()
	var worst time.Duration
	for i := 0; i < 3; i++ {
		t := time.Now()
		s, err := st.ExpiryStats(context.Background(), now, windows)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(t)
		worst = max(worst, d)
		if i == 0 {
			b.Logf("stats: %+v", s)
			if s.Active+s.Expired+s.Revoked != reminderCerts || s.Expiring[3] == 0 {
				b.Fatalf("stats %+v do not add up to %d rows", s, reminderCerts)
			}
		}
		b.Logf("pass %d: %s", i, d.Round(time.Millisecond))
	}
	b.ReportMetric(worst.Seconds()*1000, "worst_ms")
	b.ReportMetric(peakRSS(), "peak_rss_MiB")
	if worst > 2*time.Second {
		b.Errorf("expiry stats took %s, bar 2 s", worst)
	}
}
