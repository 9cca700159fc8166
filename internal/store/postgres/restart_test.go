package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// TestRestart: PostgreSQL restarted under an open pool. While it is down
// appends and Ping fail; once it is back the very next append and Ping
// succeed on the same DB — the pool does not hand out the connections the
// restart closed — and the chain runs on unbroken.
func TestRestart(t *testing.T) {
	srv := pgtest.StartServer(t)
	db := MustOpen(t, pgtest.NewDatabase(t, srv.DSN()))
	ctx := context.Background()
	ev := func() *audit.Event {
		return &audit.Event{Time: time.Now(), Actor: "alice", Subject: "alice", Action: audit.ActionLogin, Outcome: audit.OutcomeSuccess, Details: "{}"}
	}
	// Several connections open and in use, as under load.
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- db.AppendAudit(ctx, ev()) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	srv.Down(t)
	if err := db.AppendAudit(ctx, ev()); err == nil {
		t.Fatal("append succeeded with PostgreSQL down")
	}
	if err := db.Ping(ctx); err == nil {
		t.Fatal("ping succeeded with PostgreSQL down")
	}
	srv.Up(t)
	for i := range 8 {
		if err := db.AppendAudit(ctx, ev()); err != nil {
			t.Fatalf("append #%d after PostgreSQL is back: %v", i+1, err)
		}
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("ping after PostgreSQL is back: %v", err)
	}
	// A restart nobody noticed while it lasted: the first append finds a
	// dead connection before BEGIN reached the server, and tries again.
	for range 8 {
		go func() { errs <- db.AppendAudit(ctx, ev()) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	srv.Down(t)
	srv.Up(t)
	for i := range 8 {
		if err := db.AppendAudit(ctx, ev()); err != nil {
			t.Fatalf("append #%d after an unnoticed restart: %v", i+1, err)
		}
	}
	if n, err := verify(db); err != nil || n != 32 {
		t.Fatalf("chain: %d events, %v", n, err)
	}
}
