package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct {
		name, dsn, want string
	}{
		{"url", "postgres://postgres@/postgres?host=%2Ftmp%2Fs&sslmode=disable", "postgres://postgres@/t_1?host=%2Ftmp%2Fs&sslmode=disable"},
		{"postgresql url", "postgresql://u:p@db:5432/app", "postgresql://u:p@db:5432/t_1"},
		{"keyword/value", "host=/tmp/s user=postgres dbname=postgres", "host=/tmp/s user=postgres dbname=postgres dbname=t_1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withDatabase(tc.dsn, "t_1")
			if err != nil || got != tc.want {
				t.Fatalf("withDatabase(%q) = %q, %v; want %q", tc.dsn, got, err, tc.want)
			}
			cfg, err := pgx.ParseConfig(got)
			if err != nil || cfg.Database != "t_1" {
				t.Fatalf("pgx reads database %q from %q (%v)", cfg.Database, got, err)
			}
		})
	}
}

// TestNewDatabase: each call gives an empty database of its own on one
// server, and the server runs as a user PostgreSQL accepts even under root.
func TestNewDatabase(t *testing.T) {
	server := StartServer(t)
	ctx := context.Background()
	names := map[string]bool{}
	for range 2 {
		conn, err := pgx.Connect(ctx, NewDatabase(t, server.DSN()))
		if err != nil {
			t.Fatal(err)
		}
		var name string
		var tables int
		if err := conn.QueryRow(ctx, `SELECT current_database(), (SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		if tables != 0 || names[name] {
			t.Fatalf("database %s: %d tables, seen before: %v", name, tables, names[name])
		}
		names[name] = true
	}
}

// TestDownUp: a server taken down refuses connections and keeps its data;
// brought up again it serves the same rows on the same DSN.
func TestDownUp(t *testing.T) {
	server := StartServer(t)
	ctx := context.Background()
	dsn := NewDatabase(t, server.DSN())
	if err := exec1(dsn, `CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	server.Down(t)
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a server that is down")
	}
	server.Up(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("after Up: %d, %v", v, err)
	}
}
