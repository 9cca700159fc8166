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
