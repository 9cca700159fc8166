package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/storetest"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// mustConnect opens a single connection, for settings that last a session.
func mustConnect(tb testing.TB, dsn string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(tb testing.TB, conn *pgx.Conn, sql string) {
	tb.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// mustAppend appends n events and returns them as stored.
func mustAppend(tb testing.TB, db *DB, n int) []*audit.Event {
	tb.Helper()
	var out []*audit.Event
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	for i := range n {
		e := &audit.Event{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "alice", Subject: "alice",
			Action: audit.ActionIssue, Outcome: audit.OutcomeSuccess, ClientIP: "192.0.2.1", UserAgent: "test",
			RequestID: fmt.Sprint("req-", i), Serial: fmt.Sprintf("0a:%02x", i), Details: `{"ttl":"720h"}`}
		if err := db.AppendAudit(context.Background(), e); err != nil {
			tb.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// verify walks the whole chain as `certportal audit verify` does.
func verify(db *DB) (int64, error) {
	var v audit.Verifier
	err := db.StreamAudit(context.Background(), store.AuditFilter{}, v.Check)
	return v.Count, err
}

// TestAuditTamperingDetected edits each field of a middle row straight in
// the database, past the trigger as a superuser can, and checks the chain
// names the row; putting the value back makes it verify again.
func TestAuditTamperingDetected(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	db := MustOpen(t, dsn)
	mustAppend(t, db, 3)
	if n, err := verify(db); err != nil || n != 3 {
		t.Fatalf("untouched chain: %d events, %v", n, err)
	}

	super := mustConnect(t, dsn)
	// Triggers fire only in the default "origin" role; replica mode is how a
	// superuser (here the test's own role) slips past them, for this
	// session alone.
	mustExec(t, super, `SET session_replication_role = replica`)
	mustExec(t, super, `CREATE TEMP TABLE saved AS SELECT * FROM audit_events WHERE id = 2`)

	type tamper struct{ name, edit, restore, want string }
	cases := []tamper{
		{"time", `UPDATE audit_events SET time_us = time_us + 1 WHERE id = 2`,
			`UPDATE audit_events SET time_us = time_us - 1 WHERE id = 2`, "at row 2:"},
	}
	for _, col := range []string{"actor", "subject", "action", "outcome", "client_ip", "user_agent", "request_id",
		"serial", "details", "prev_hash", "hash"} {
		cases = append(cases, tamper{col,
			fmt.Sprintf(`UPDATE audit_events SET %s = %[1]s || 'x' WHERE id = 2`, col),
			fmt.Sprintf(`UPDATE audit_events SET %s = left(%[1]s, -1) WHERE id = 2`, col), "at row 2:"})
	}
	cases = append(cases,
		tamper{"renumbered", `UPDATE audit_events SET id = 20 WHERE id = 2`,
			`UPDATE audit_events SET id = 2 WHERE id = 20`, "expected row 2"},
		tamper{"deleted", `DELETE FROM audit_events WHERE id = 2`,
			`INSERT INTO audit_events SELECT * FROM saved`, "expected row 2"},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustExec(t, super, tc.edit)
			_, err := verify(db)
			mustExec(t, super, tc.restore)
			if !errors.Is(err, audit.ErrBroken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("tampered chain: %v; want %q", err, tc.want)
			}
			if n, err := verify(db); err != nil || n != 3 {
				t.Fatalf("restored chain: %d events, %v", n, err)
			}
		})
	}
}

// TestAuditAppendOnly: the portal's own connection cannot change or remove
// an event, even with a statement that matches no row.
func TestAuditAppendOnly(t *testing.T) {
	db := MustOpen(t, pgtest.NewDatabase(t, pgtest.Start(t)))
	mustAppend(t, db, 3)
	for _, stmt := range []string{
		`UPDATE audit_events SET actor = 'mallory' WHERE id = 2`,
		`UPDATE audit_events SET actor = 'mallory' WHERE false`,
		`DELETE FROM audit_events WHERE id = 3`,
		`TRUNCATE audit_events`,
	} {
		if _, err := db.pool.Exec(context.Background(), stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v", stmt, err)
		}
	}
	if n, err := verify(db); err != nil || n != 3 {
		t.Fatalf("chain after refused changes: %d events, %v", n, err)
	}
}

// TestAuditAcrossReplicas: replicas with pools of their own append at once
// and still build one gap-free chain.
func TestAuditAcrossReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	replicas := []*DB{MustOpen(t, dsn), MustOpen(t, dsn), MustOpen(t, dsn)}
	var wg sync.WaitGroup
	for _, db := range replicas {
		for range 20 {
			wg.Go(func() {
				e := &audit.Event{Time: time.Now(), Actor: "alice", Action: audit.ActionLogin, Outcome: audit.OutcomeSuccess, Details: "{}"}
				if err := db.AppendAudit(context.Background(), e); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if n, err := verify(replicas[0]); err != nil || n != 60 {
		t.Fatalf("chain: %d events, %v", n, err)
	}
}

// restrictedRole is the portal's role as the package comment sets it up.
const restrictedRole = "certportal_restricted"

// grants are the package comment's statements, run as the owner.
var grants = []string{
	`GRANT USAGE ON SCHEMA public TO ` + restrictedRole,
	`GRANT SELECT ON schema_migrations TO ` + restrictedRole,
	`GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, certificates, issuance_reservations, login_attempts TO ` + restrictedRole,
	`GRANT SELECT, INSERT ON audit_events TO ` + restrictedRole,
	`GRANT SELECT, INSERT, UPDATE ON notifications, user_prefs TO ` + restrictedRole,
	`GRANT USAGE ON SEQUENCE notifications_id_seq TO ` + restrictedRole,
	`GRANT SELECT, INSERT, DELETE ON mfa_enrolments TO ` + restrictedRole,
	`GRANT SELECT, UPDATE ON store_probe TO ` + restrictedRole,
	`GRANT SELECT, INSERT, UPDATE, DELETE ON vault_certs, reconcile_runs, reconcile_results TO ` + restrictedRole,
	`GRANT USAGE ON SEQUENCE reconcile_runs_id_seq TO ` + restrictedRole,
	`GRANT SELECT, INSERT, UPDATE, DELETE ON certificate_days TO ` + restrictedRole,
	`GRANT SELECT, UPDATE ON reconcile_state TO ` + restrictedRole,
	`REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM ` + restrictedRole,
}

// TestRestrictedRole: with the grants the package comment documents, the
// portal runs the whole store suite without owning a table, and the
// database itself refuses to change an event, whatever the trigger's state.
func TestRestrictedRole(t *testing.T) {
	server := pgtest.Start(t)
	admin := mustConnect(t, server)
	mustExec(t, admin, `CREATE ROLE `+restrictedRole+` LOGIN`)
	// Registered before any database is created, so it runs after they are
	// all dropped: a role with privileges in a database cannot be dropped.
	t.Cleanup(func() { mustExec(t, admin, `DROP ROLE `+restrictedRole) })

	// open migrates a fresh database as its owner, grants, and opens it as
	// the restricted role.
	open := func(t *testing.T) *DB {
		t.Helper()
		dsn := pgtest.NewDatabase(t, server)
		MustOpen(t, dsn).Close()
		owner := mustConnect(t, dsn)
		for _, g := range grants {
			mustExec(t, owner, g)
		}
		owner.Close(context.Background())
		return MustOpen(t, asUser(t, dsn, restrictedRole))
	}
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })

	t.Run("refused", func(t *testing.T) {
		db := open(t)
		mustAppend(t, db, 2)
		for _, stmt := range []string{
			`ALTER TABLE audit_events DISABLE TRIGGER ALL`,
			`SET session_replication_role = replica`,
			`UPDATE audit_events SET actor = 'mallory' WHERE id = 2`,
			`DELETE FROM audit_events WHERE id = 2`,
			`TRUNCATE audit_events`,
		} {
			var pgErr *pgconn.PgError
			_, err := db.pool.Exec(context.Background(), stmt)
			// 42501: refused for want of privilege, before any trigger runs.
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("%s: %v", stmt, err)
			}
		}
		if n, err := verify(db); err != nil || n != 2 {
			t.Fatalf("chain: %d events, %v", n, err)
		}
	})
}

// asUser points a pgtest URL DSN at another role.
func asUser(tb testing.TB, dsn, user string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	u.User = url.User(user)
	return u.String()
}
