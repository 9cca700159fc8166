package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store/storetest"
)

// migrationIndex is the position of the migration that starts with prefix.
func migrationIndex(t *testing.T, prefix string) int {
	t.Helper()
	for i, m := range migrations {
		if strings.HasPrefix(m, prefix) {
			return i
		}
	}
	t.Fatalf("no migration starts with %q", prefix)
	return 0
}

// TestCertificateDaysBackfill: a database made before the day counts, with
// certificates in it, gets them counted by the migration; and the triggers
// follow the writes the portal never makes (a delete, a changed not_after,
// a revocation undone, the whole table emptied), so sqlite3 by hand or a
// restore cannot put the counts out of step either.
func TestCertificateDaysBackfill(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	before := migrationIndex(t, "CREATE TABLE certificate_days")
	for i, m := range migrations[:before] {
		if _, err := raw.Exec(m); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	if _, err := raw.Exec(`PRAGMA user_version = ` + strconv.Itoa(before)); err != nil {
		t.Fatal(err)
	}
	insertRaw(t, raw)
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.CheckCounts(t, db, "after the migration")
	for _, stmt := range []string{
		`DELETE FROM certificates WHERE serial = '3b:03'`,
		`UPDATE certificates SET not_after = not_after + 3 * 86400000 WHERE serial = '3b:05'`,
		`UPDATE certificates SET revoked_at = NULL WHERE serial = '3b:0a'`,
		`UPDATE certificates SET not_after = not_after - 86400000, revoked_at = 1 WHERE serial = '3b:0c'`,
		`DELETE FROM certificates`,
	} {
		if _, err := raw.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
		storetest.CheckCounts(t, db, stmt)
	}
}

// insertRaw writes 40 certificates as an older portal would have: hours
// apart around today, every third revoked, one before 1970.
func insertRaw(t *testing.T, raw *sql.DB) {
	t.Helper()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := range 40 {
		notAfter := base.Add(time.Duration(i-20) * 17 * time.Hour)
		if i == 39 {
			notAfter = time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC)
		}
		var revoked any
		if i%3 == 1 {
			revoked = notAfter.Add(-time.Hour).UnixMilli()
		}
		serial := "3b:" + string("0123456789abcdef"[i/16]) + string("0123456789abcdef"[i%16])
		if _, err := raw.Exec(`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after, revoked_at)
			VALUES(?, 'alice', 'alice@example.com', 'ec-256', 'modern', 'alice', ?, ?, ?)`,
			serial, notAfter.Add(-30*24*time.Hour).UnixMilli(), notAfter.UnixMilli(), revoked); err != nil {
			t.Fatal(err)
		}
	}
}
