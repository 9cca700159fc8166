package bench

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store/sqlite"
)

const reminderCerts = 1_000_000

// fillCertificates writes n inventory rows straight into a migrated SQLite
// file: 90-day certificates issued evenly over the last 395 days (so
// expiries run from 305 days ago to 90 days ahead), three per user, one in
// ten revoked. The indexes are built after the rows, as a restore would.
func fillCertificates(b *testing.B, path string, n int, now time.Time) {
	b.Helper()
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DROP INDEX certificates_expiry`); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`DROP INDEX certificates_active`); err != nil {
		b.Fatal(err)
	}
	first := now.Add(-305 * 24 * time.Hour)
	step := 395 * 24 * time.Hour / time.Duration(n)
	for i := 0; i < n; {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := tx.Prepare(`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after, revoked_at)
			VALUES(?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < 50_000 && i < n; j, i = j+1, i+1 {
			user := fmt.Sprintf("user%06d", i%(n/3))
			notAfter := first.Add(time.Duration(i) * step)
			var revoked any
			if i%10 == 0 {
				revoked = notAfter.Add(-24 * time.Hour).UnixMilli()
			}
			if _, err := stmt.Exec(fmt.Sprintf("%02x:%02x:%02x:%02x", i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff), user, user+"@example.com",
				"ec-256", "modern", user, notAfter.Add(-90*24*time.Hour).UnixMilli(), notAfter.UnixMilli(), revoked); err != nil {
				b.Fatal(err)
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range []string{
		`CREATE INDEX certificates_expiry ON certificates(not_after, issued_at, username) WHERE revoked_at IS NULL`,
		`CREATE INDEX certificates_active ON certificates(username, not_after, revoked_at) WHERE revoked_at IS NULL`,
		`ANALYZE`,
	} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
}

type nopSender struct{}

func (nopSender) Send(context.Context, *notify.Message) error { return nil }

// BenchmarkReminderScan: the reminder scan (every band, owner email and
// helpdesk copy) over 1,000,000 inventory rows in SQLite: the first pass,
// which records every due reminder, and the steady pass after it, which
// finds them all recorded. Bar: under 5 s each, memory flat (the rows are
// never loaded into the process).
func BenchmarkReminderScan(b *testing.B) {
	path := filepath.Join(b.TempDir(), "certportal.db")
	now := time.Now()
	began := time.Now()
	fillCertificates(b, path, reminderCerts, now)
	b.Logf("filled %d certificates in %s", reminderCerts, time.Since(began).Round(time.Millisecond))
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r, err := notify.New(st, notify.Options{Thresholds: []time.Duration{720 * time.Hour, 168 * time.Hour, 72 * time.Hour},
		Expired: true, EmailDomain: "example.com", HelpdeskEmail: "helpdesk@example.com", PublicURL: "https://certs.example.com",
		Email: nopSender{}, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	resetPeakRSS()
	before := peakRSS()
	b.ResetTimer()
	for pass, name := range []string{"first", "steady"} {
		t := time.Now()
		res, err := r.Enqueue(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(t)
		b.ReportMetric(d.Seconds(), name+"_pass_s")
		b.Logf("%s pass: %s, %v", name, d.Round(time.Millisecond), res)
		if (pass == 0 && res.Enqueued == 0) || (pass == 1 && res.Enqueued != 0) {
			b.Fatalf("%s pass enqueued %d", name, res.Enqueued)
		}
		if d > 5*time.Second {
			b.Errorf("%s pass took %s, bar 5 s", name, d)
		}
	}
	b.ReportMetric(peakRSS(), "peak_rss_MiB")
	b.Logf("peak RSS %.1f MiB (before the passes: %.1f MiB)", peakRSS(), before)
}
