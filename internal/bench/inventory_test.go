package bench

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
)

// BenchmarkInventoryQueries: the store calls behind the inventory report,
// its drill-down and CSV, helpdesk search and reconciliation, over
// 1,000,000 inventory rows in SQLite (fillCertificates' shape). Each call
// runs 40 times; p50 and p95 in ms. The export streams every row and
// reports the process's peak RSS growth: memory must stay flat in the row
// count (nothing loads all rows). counts_direct is the statement the
// counts replaced (an index range per state), which they must equal.
func BenchmarkInventoryQueries(b *testing.B) {
	path := filepath.Join(b.TempDir(), "certportal.db")
	now := time.Now()
	fillCertificates(b, path, reminderCerts, now)
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	serial := func(i int) string {
		return fmt.Sprintf("%02x:%02x:%02x:%02x", i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
	}
	batch := make([]string, 500)
	for i := range batch {
		batch[i] = serial(i * 1999 % reminderCerts)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	direct := func() (c store.InventoryCounts) {
		ms := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
		if err := raw.QueryRow(`SELECT
			(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > ?1),
			(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > ?1 AND not_after <= ?2),
			(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > ?1 AND not_after <= ?3),
			(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after <= ?1),
			(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL)`, ms(0), ms(7*24*time.Hour), ms(30*24*time.Hour)).
			Scan(&c.Active, &c.Expiring7, &c.Expiring30, &c.Expired, &c.Revoked); err != nil {
			b.Fatal(err)
		}
		return c
	}
	// The day counts the triggers kept while the rows went in equal a
	// direct count of the 1,000,000 rows.
	if got, want := counts(b, st, now), direct(); got != want {
		b.Fatalf("counts %+v, a direct count %+v", got, want)
	}
	calls := []struct {
		name string
		fn   func(i int) error
	}{
		{"counts", func(int) error { _, err := st.InventoryCounts(ctx, now); return err }},
		{"counts_direct", func(int) error { direct(); return nil }},
		{"by_user_page", func(i int) error {
			_, err := st.InventoryByUser(ctx, now, fmt.Sprintf("user%06d", i*7919%(reminderCerts/3)), 101)
			return err
		}},
		{"expiring7_page", func(i int) error {
			_, err := st.ListInventory(ctx, store.InventoryFilter{State: store.StateExpiring7, At: now, AfterSerial: serial(i * 9973 % reminderCerts), Limit: 51})
			return err
		}},
		{"revoked_page", func(i int) error {
			_, err := st.ListInventory(ctx, store.InventoryFilter{State: store.StateRevoked, At: now, AfterSerial: serial(i * 9973 % reminderCerts), Limit: 51})
			return err
		}},
		{"user_page", func(i int) error {
			_, err := st.ListInventory(ctx, store.InventoryFilter{Username: fmt.Sprintf("user%06d", i*7919%(reminderCerts/3)), At: now, Limit: 51})
			return err
		}},
		{"search_users", func(i int) error {
			_, err := st.SearchUsers(ctx, fmt.Sprintf("user%04d", i*37%3333), now, 50)
			return err
		}},
		{"by_serials_500", func(int) error { _, err := st.CertificatesBySerials(ctx, batch); return err }},
	}
	b.ResetTimer()
	for _, c := range calls {
		var lat []time.Duration
		for i := range 40 {
			start := time.Now()
			if err := c.fn(i); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, c.name+"_p50_ms")
		b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, c.name+"_p95_ms")
	}
	runtime.GC()
	resetPeakRSS()
	base := peakRSS()
	start := time.Now()
	rows := 0
	if err := st.StreamInventory(ctx, store.InventoryFilter{At: now}, func(*store.Certificate) error { rows++; return nil }); err != nil {
		b.Fatal(err)
	}
	if rows != reminderCerts {
		b.Fatalf("streamed %d rows, want %d", rows, reminderCerts)
	}
	b.ReportMetric(time.Since(start).Seconds(), "stream_all_s")
	b.ReportMetric(peakRSS()-base, "stream_all_peak_rss_growth_MiB")
}

func counts(b *testing.B, st store.Store, at time.Time) store.InventoryCounts {
	b.Helper()
	c, err := st.InventoryCounts(context.Background(), at)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
