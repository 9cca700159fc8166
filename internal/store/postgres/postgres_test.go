package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/storetest"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// MustOpen opens a store on dsn and closes it when the test ends.
func MustOpen(tb testing.TB, dsn string) *DB {
	tb.Helper()
	db, err := Open(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestStoreSuite(t *testing.T) {
	server := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return MustOpen(t, pgtest.NewDatabase(t, server))
	})
}

// TestReplicasMigrateTogether starts several replicas on one empty database
// at once: the advisory lock must make all but one find the schema current
// instead of failing on tables another replica is creating.
func TestReplicasMigrateTogether(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	const replicas = 4
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, replicas)
		dbs   = make([]*DB, replicas)
	)
	for i := range replicas {
		wg.Go(func() {
			<-start
			dbs[i], errs[i] = Open(context.Background(), dsn)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i+1, err)
			continue
		}
		defer dbs[i].Close()
	}
	if t.Failed() {
		return
	}
	var rows, latest int
	if err := dbs[0].pool.QueryRow(context.Background(), `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&rows, &latest); err != nil {
		t.Fatal(err)
	}
	if rows != len(migrations) || latest != len(migrations) {
		t.Fatalf("schema_migrations: %d rows up to version %d, want %d", rows, latest, len(migrations))
	}
	// Every replica can use the schema straight away.
	for i, db := range dbs {
		if _, err := db.CountActive(context.Background(), "alice", time.Now()); err != nil {
			t.Errorf("replica %d: %v", i+1, err)
		}
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	for i := 0; i < 2; i++ {
		db, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatalf("open #%d: %v", i+1, err)
		}
		db.Close()
	}
}

// Replicas revoking one certificate at once must leave one whole record,
// never fields from different revocations.
func TestConcurrentRevocationsKeepOneRecord(t *testing.T) {
	db := MustOpen(t, pgtest.NewDatabase(t, pgtest.Start(t)))
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	if err := db.InsertCertificate(ctx, &store.Certificate{Serial: "0a:01", Username: "alice", Subject: "alice@example.com",
		KeyType: "ec-256", Encryption: "modern", IssuedBy: "alice", IssuedAt: t0, NotAfter: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			r := store.Revocation{At: t0.Add(time.Duration(i) * time.Minute), Reason: fmt.Sprint("r", i), By: fmt.Sprint("b", i), Ticket: fmt.Sprint("t", i)}
			if err := db.MarkRevoked(ctx, "0a:01", r); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := db.GetCertificate(ctx, "0a:01")
	if err != nil {
		t.Fatal(err)
	}
	i := int(got.RevokedAt.Sub(t0) / time.Minute)
	if got.RevokeReason != fmt.Sprint("r", i) || got.RevokedBy != fmt.Sprint("b", i) || got.Ticket != fmt.Sprint("t", i) {
		t.Fatalf("mixed revocation record: %+v", got)
	}
}

// An older binary must not run against a schema it does not know.
func TestRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	db := MustOpen(t, dsn)
	if _, err := db.pool.Exec(context.Background(), `INSERT INTO schema_migrations(version) VALUES($1)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dsn)
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("open on a newer schema: %v", err)
	}
}

// TestUnavailableServer: readiness checks and start-up must report a
// database that has gone away — or stopped answering — within their
// deadline, not hang.
func TestUnavailableServer(t *testing.T) {
	for _, fault := range []struct {
		name  string
		apply func(t *testing.T, s *pgtest.Server)
	}{
		{"stopped", func(t *testing.T, s *pgtest.Server) {
			if err := s.Stop(); err != nil {
				t.Fatal(err)
			}
		}},
		// Connections stay open and new ones are accepted by the kernel,
		// but nothing answers: only the context ends the wait.
		{"paused", func(t *testing.T, s *pgtest.Server) { s.Pause(t) }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			server := pgtest.StartServer(t)
			db := MustOpen(t, server.DSN())
			if err := db.Ping(context.Background()); err != nil {
				t.Fatalf("ping while running: %v", err)
			}
			fault.apply(t, server)
			const deadline = time.Second
			for _, tc := range []struct {
				name string
				call func(ctx context.Context) error
			}{
				{"ping", db.Ping},
				{"query", func(ctx context.Context) error { _, err := db.GetCertificate(ctx, "0a:01"); return err }},
				{"open", func(ctx context.Context) error {
					db, err := Open(ctx, server.DSN())
					if err == nil {
						db.Close()
					}
					return err
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					defer cancel()
					began := time.Now()
					err := tc.call(ctx)
					took := time.Since(began)
					if err == nil {
						t.Fatal("no error from an unavailable server")
					}
					// The context bounds the wait; a little slack for a busy machine.
					if took > deadline+time.Second {
						t.Fatalf("took %s, deadline was %s", took, deadline)
					}
					t.Logf("%v after %s", err, took.Round(time.Millisecond))
				})
			}
		})
	}
}

// TestInventoryClaimWaitsForWriters: a reconciliation's claim of the
// inventory's change flag waits for a transaction that changed the
// inventory but has not committed, so the run's results (computed after
// the claim) include that change. Without the wait the claim would clear a
// flag the writer had found set already, and the change, committed after
// the run computed its groups, would be seen by no run until something
// else changed.
func TestInventoryClaimWaitsForWriters(t *testing.T) {
	db := MustOpen(t, pgtest.NewDatabase(t, pgtest.Start(t)))
	ctx := context.Background()
	// The flag is set (a fresh schema starts so); the writer finds it set.
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after)
		VALUES('0a:01', 'alice', 'alice@example.com', 'ec-256', 'modern', 'alice', now(), now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	type claim struct {
		changed bool
		err     error
	}
	done := make(chan claim, 1)
	go func() {
		changed, err := db.ClaimInventoryChanges(ctx)
		done <- claim{changed, err}
	}()
	// The claim waits on the writer's lock (pg_locks shows it not granted).
	deadline := time.Now().Add(time.Minute)
	for {
		var waiting int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'certificates'::regclass`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case c := <-done:
			t.Fatalf("claim returned (%v, %v) while a writer had not committed", c.changed, c.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the claim never waited for the writer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	c := <-done
	if c.err != nil || !c.changed {
		t.Fatalf("claim: %v %v, want changed", c.changed, c.err)
	}
	// What the run computes now sees the row.
	if _, err := db.GetCertificate(ctx, "0a:01"); err != nil {
		t.Fatal(err)
	}
	if changed, err := db.ClaimInventoryChanges(ctx); err != nil || changed {
		t.Fatalf("second claim: %v %v", changed, err)
	}
}
