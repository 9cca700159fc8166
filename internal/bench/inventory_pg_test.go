package bench

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/postgres"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// directCountsPG is the inventory report's counts as they were made before
// the day counts: one index range per state over certificates (PostgreSQL).
const directCountsPG = `SELECT
	(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > $1),
	(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > $1 AND not_after <= $2),
	(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > $1 AND not_after <= $3),
	(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after <= $1),
	(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL)`

// BenchmarkInventoryCountsPostgres: the inventory report's counts and the
// metrics' ExpiryStats over fillCertificates' 1,000,000 rows in PostgreSQL
// (made with generate_series, through the day-count triggers), 40 calls
// (3 for the stats); beside them the direct count by index range per state
// that the counts replaced, which they must equal. Bar: p95 < 200 ms.
func BenchmarkInventoryCountsPostgres(b *testing.B) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(b, pgtest.Start(b))
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	now := time.Now().UTC().Truncate(time.Millisecond)
	began := time.Now()
	// fillCertificates' shape: 90-day certificates issued evenly over 395
	// days, three per user, one in ten revoked a day before it expires.
	if _, err := conn.Exec(ctx, `INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after, revoked_at)
		SELECT lpad(to_hex(i >> 24 & 255), 2, '0') || ':' || lpad(to_hex(i >> 16 & 255), 2, '0') || ':' ||
				lpad(to_hex(i >> 8 & 255), 2, '0') || ':' || lpad(to_hex(i & 255), 2, '0'),
			u, u || '@example.com', 'ec-256', 'modern', u, na - interval '90 days', na,
			CASE WHEN i % 10 = 0 THEN na - interval '1 day' END
		FROM generate_series(0, $2 - 1) AS i,
			LATERAL (SELECT 'user' || lpad((i % ($2 / 3))::text, 6, '0') AS u,
				date_trunc('milliseconds', $1::timestamptz - interval '305 days' + i * (interval '395 days' / $2)) AS na) AS x`,
		now, reminderCerts); err != nil {
		b.Fatal(err)
	}
	// What autovacuum would have done by the time anyone reads the report.
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %d certificates in %s", reminderCerts, time.Since(began).Round(time.Millisecond))
	direct := func() (c store.InventoryCounts) {
		if err := conn.QueryRow(ctx, directCountsPG, now, now.Add(7*24*time.Hour), now.Add(30*24*time.Hour)).
			Scan(&c.Active, &c.Expiring7, &c.Expiring30, &c.Expired, &c.Revoked); err != nil {
			b.Fatal(err)
		}
		return c
	}
	want := direct()
	if got, err := st.InventoryCounts(ctx, now); err != nil || got != want {
		b.Fatalf("counts %+v (%v), a direct count %+v", got, err, want)
	}
	b.Logf("counts: %+v", want)
	var daysSize int64
	if err := conn.QueryRow(ctx, `SELECT pg_relation_size('certificate_days')`).Scan(&daysSize); err != nil {
		b.Fatal(err)
	}
	b.Logf("certificate_days: %d bytes on disk", daysSize)
	windows := []time.Duration{24 * time.Hour, 72 * time.Hour, 168 * time.Hour, 720 * time.Hour}
	calls := []struct {
		name string
		n    int
		fn   func() error
	}{
		{"counts", 40, func() error { _, err := st.InventoryCounts(ctx, now); return err }},
		{"counts_direct", 40, func() error { direct(); return nil }},
		{"expiry_stats", 3, func() error { _, err := st.ExpiryStats(ctx, now, windows); return err }},
	}
	b.ResetTimer()
	for _, c := range calls {
		var lat []time.Duration
		for range c.n {
			start := time.Now()
			if err := c.fn(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, c.name+"_p50_ms")
		b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, c.name+"_p95_ms")
	}
}
