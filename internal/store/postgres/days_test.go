package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certportal/certportal/internal/store/storetest"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// migrateUpTo applies the migrations before the one that starts with
// prefix, as an older portal left the database.
func migrateUpTo(t *testing.T, dsn, prefix string) {
	t.Helper()
	conn := mustConnect(t, dsn)
	before := -1
	for i, m := range migrations {
		if strings.HasPrefix(m, prefix) {
			before = i
			break
		}
	}
	if before < 0 {
		t.Fatalf("no migration starts with %q", prefix)
	}
	mustExec(t, conn, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
	for i, m := range migrations[:before] {
		mustExec(t, conn, m)
		mustExec(t, conn, fmt.Sprintf(`INSERT INTO schema_migrations(version) VALUES(%d)`, i+1))
	}
}

// oldInsert is how a replica of the previous version writes a certificate.
const oldInsert = `INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after, revoked_at)
	VALUES($1, 'alice', 'alice@example.com', 'ec-256', 'modern', 'alice', $2, $3, $4)`

// TestCertificateDaysBackfill: a database made before the day counts gets
// its certificates counted by the migration, while a replica of the older
// version keeps issuing and revoking through it (a rolling upgrade): no
// write falls between the triggers and the backfill. Then the triggers
// follow the writes the portal never makes (a delete, a changed not_after,
// a revocation undone, TRUNCATE).
func TestCertificateDaysBackfill(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	migrateUpTo(t, dsn, "CREATE TABLE certificate_days")
	old, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var n atomic.Int64
	write := func() error {
		i := n.Add(1)
		notAfter := base.Add(time.Duration(i%50-25) * 17 * time.Hour)
		if i == 7 {
			notAfter = time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC)
		}
		var revoked any
		if i%3 == 1 {
			revoked = notAfter.Add(-time.Hour)
		}
		serial := fmt.Sprintf("3b:%04x", i)
		if _, err := old.Exec(ctx, oldInsert, serial, notAfter.Add(-30*24*time.Hour), notAfter, revoked); err != nil {
			return fmt.Errorf("old replica insert: %w", err)
		}
		if i%5 == 0 {
			if _, err := old.Exec(ctx, `UPDATE certificates SET revoked_at = COALESCE(revoked_at, now()) WHERE serial = $1`, fmt.Sprintf("3b:%04x", i-2)); err != nil {
				return fmt.Errorf("old replica revoke: %w", err)
			}
		}
		return nil
	}
	for range 40 {
		if err := write(); err != nil {
			t.Fatal(err)
		}
	}
	// The old replica writes throughout the migration and a little after.
	var migrated atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for after := 0; after < 20; {
				if err := write(); err != nil {
					errs <- err
					return
				}
				if migrated.Load() {
					after++
				}
			}
		})
	}
	db := MustOpen(t, dsn)
	migrated.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d certificates written by the old replica", n.Load())
	storetest.CheckCounts(t, db, "after the migration")
	conn := mustConnect(t, dsn)
	for _, stmt := range []string{
		`DELETE FROM certificates WHERE serial = '3b:0003'`,
		`UPDATE certificates SET not_after = not_after + interval '3 days' WHERE serial = '3b:0005'`,
		`UPDATE certificates SET revoked_at = NULL WHERE serial = '3b:000a'`,
		`UPDATE certificates SET not_after = not_after - interval '1 day', revoked_at = now() WHERE serial = '3b:000c'`,
		`TRUNCATE certificates`,
	} {
		mustExec(t, conn, stmt)
		storetest.CheckCounts(t, db, stmt)
	}
}
