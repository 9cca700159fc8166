// Package sqlite implements store.Store on a SQLite file (modernc.org/sqlite,
// no cgo), the default single-replica store.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"

	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlstore"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is a SQLite-backed store: the shared SQL (sqlstore) with SQLite's
// dialect, its schema, and its single writer.
type DB struct {
	*sqlstore.Store
	db   *sql.DB
	path string
	w    *writer
}

// Path is the database file.
func (s *DB) Path() string { return s.path }

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the SQLite file at path and migrates it.
func Open(ctx context.Context, path string) (*DB, error) {
	// WAL lets readers run beside the single writer; synchronous=FULL because
	// an audit or inventory row acknowledged to a user must survive a crash.
	if err := createPrivate(path); err != nil {
		return nil, err
	}
	// temp_store=MEMORY: the writer runs each request in a SAVEPOINT, whose
	// statement journal SQLite otherwise keeps in a temporary file, opened
	// and closed with every group commit (open, write, close, unlink: ~2% of
	// the portal's CPU per issuance). It holds only the undo of the
	// request's own rows; durability is the WAL's and unchanged.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_pragma=temp_store(MEMORY)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	s := &DB{db: db, path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s.startWriter()
	s.Store = sqlstore.New(db, &dialect, sqliteWriter{s})
	return s, nil
}

// createPrivate makes sure the database file exists with mode 0600 before
// SQLite opens it: it holds the inventory and the encrypted sessions, and
// SQLite would create it with the umask's 0644. SQLite gives the -wal and
// -shm files it creates the database file's mode, so they follow. A file
// that exists already is tightened to 0600 too (an upgrade from a version
// that left it 0644).
func createPrivate(path string) error {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("open sqlite %s: make it private (0600): %w", path, err)
		}
	}
	for _, side := range []string{path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(side); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(side, 0o600); err != nil {
				return fmt.Errorf("open sqlite %s: make it private (0600): %w", side, err)
			}
		}
	}
	return nil
}

var migrations = []string{
	`CREATE TABLE sessions (
		id_hash    TEXT PRIMARY KEY,
		data       BLOB NOT NULL,
		created_at INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	)`,
	`CREATE INDEX sessions_expires_at ON sessions(expires_at)`,
	`CREATE TABLE certificates (
		serial        TEXT PRIMARY KEY,
		username      TEXT NOT NULL,
		subject       TEXT NOT NULL,
		key_type      TEXT NOT NULL,
		encryption    TEXT NOT NULL,
		issued_by     TEXT NOT NULL,
		issued_at     INTEGER NOT NULL,
		not_after     INTEGER NOT NULL,
		revoked_at    INTEGER,
		revoke_reason TEXT NOT NULL DEFAULT '',
		revoked_by    TEXT NOT NULL DEFAULT '',
		ticket        TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE INDEX certificates_username ON certificates(username, issued_at)`,
	`CREATE TABLE audit_events (
		id         INTEGER PRIMARY KEY,
		time_us    INTEGER NOT NULL,
		actor      TEXT NOT NULL,
		subject    TEXT NOT NULL,
		action     TEXT NOT NULL,
		outcome    TEXT NOT NULL,
		client_ip  TEXT NOT NULL,
		user_agent TEXT NOT NULL,
		request_id TEXT NOT NULL,
		serial     TEXT NOT NULL,
		details    TEXT NOT NULL,
		prev_hash  TEXT NOT NULL,
		hash       TEXT NOT NULL
	)`,
	// Keyset pages filter on one column and walk id downwards.
	`CREATE INDEX audit_actor ON audit_events(actor, id)`,
	`CREATE INDEX audit_subject ON audit_events(subject, id)`,
	`CREATE INDEX audit_action ON audit_events(action, outcome, id)`,
	`CREATE INDEX audit_serial ON audit_events(serial, id)`,
	`CREATE INDEX audit_time ON audit_events(time_us)`,
	// Append-only as far as SQLite can enforce it: the portal never updates
	// or deletes an event. Someone with the file can drop these; the hash
	// chain is what detects that (certportal audit verify).
	`CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
	`CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
	// The daily chart reads a month of events: a covering index answers it
	// from the index alone (525 ms -> see docs/benchmarks.md at 1M events).
	`DROP INDEX audit_time`,
	`CREATE INDEX audit_time ON audit_events(time_us, action, outcome)`,
	// Even index-only, grouping a month of a busy trail takes ~400 ms in
	// pure-Go SQLite; the chart reads per-day counters kept with each append.
	`CREATE TABLE audit_daily (
		day           INTEGER PRIMARY KEY,
		issued        INTEGER NOT NULL DEFAULT 0,
		revoked       INTEGER NOT NULL DEFAULT 0,
		failed_logins INTEGER NOT NULL DEFAULT 0
	)`,
	rebuildDailySQL,
	// The cap check on every issuance counts a user's active certificates:
	// from this index alone (revoked_at, always NULL in it, makes it
	// covering), however many expired or revoked ones they have.
	`CREATE INDEX certificates_active ON certificates(username, not_after, revoked_at) WHERE revoked_at IS NULL`,
	// A place under the active-certificate cap, held from before the Vault
	// call until RecordIssuance turns it into a certificate (or the issuance
	// fails and releases it); see store.Reservation.
	`CREATE TABLE issuance_reservations (
		id         TEXT PRIMARY KEY,
		username   TEXT NOT NULL,
		replaces   TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	)`,
	`CREATE INDEX issuance_reservations_username ON issuance_reservations(username, expires_at)`,
	// Failed-login runs per submitted username (a keyed hash of it), see
	// store.LoginAttempts; decision is the last take's outcome, so one
	// upsert both decides and reports.
	`CREATE TABLE login_attempts (
		key      TEXT PRIMARY KEY,
		count    INTEGER NOT NULL,
		last_at  INTEGER NOT NULL,
		decision INTEGER NOT NULL
	)`,
	`CREATE INDEX login_attempts_last_at ON login_attempts(last_at)`,
	// The user's own name for a certificate (issue 10); '' for older rows.
	`ALTER TABLE certificates ADD COLUMN label TEXT NOT NULL DEFAULT ''`,
	// Expiry reminders (internal/notify): the scan reads one expiry band
	// of unrevoked certificates from this index, never the whole table.
	`CREATE INDEX certificates_expiry ON certificates(not_after) WHERE revoked_at IS NULL`,
	`CREATE TABLE notifications (
		id           INTEGER PRIMARY KEY,
		serial       TEXT NOT NULL,
		username     TEXT NOT NULL,
		threshold_s  INTEGER NOT NULL,
		channel      TEXT NOT NULL,
		state        TEXT NOT NULL,
		attempts     INTEGER NOT NULL DEFAULT 0,
		next_attempt INTEGER NOT NULL,
		lease_until  INTEGER NOT NULL DEFAULT 0,
		lease        TEXT NOT NULL DEFAULT '',
		last_error   TEXT NOT NULL DEFAULT '',
		created_at   INTEGER NOT NULL,
		sent_at      INTEGER,
		UNIQUE(serial, threshold_s, channel)
	)`,
	`CREATE INDEX notifications_due ON notifications(next_attempt) WHERE state = 'pending'`,
	`CREATE INDEX notifications_lease ON notifications(lease_until) WHERE state = 'sending'`,
	`CREATE INDEX notifications_user ON notifications(username, id)`,
	`CREATE TABLE user_prefs (
		username   TEXT PRIMARY KEY,
		lang       TEXT NOT NULL,
		updated_at INTEGER NOT NULL
	)`,
	// The reminder scan reads issued_at and username of every row in its
	// band: a covering index answers it without touching the table.
	`DROP INDEX certificates_expiry`,
	`CREATE INDEX certificates_expiry ON certificates(not_after, issued_at, username) WHERE revoked_at IS NULL`,
	// One-time MFA enrolment links (store.Enrolments): the token's hash only.
	`CREATE TABLE mfa_enrolments (
		token_hash TEXT PRIMARY KEY,
		username   TEXT NOT NULL,
		created_by TEXT NOT NULL,
		ticket     TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	)`,
	`CREATE INDEX mfa_enrolments_username ON mfa_enrolments(username)`,
	// The inventory report (issue 13) counts revoked certificates from this
	// index, one index range per state instead of a table scan, and its
	// revoked drill-down pages through it in serial order.
	`CREATE INDEX certificates_revoked ON certificates(serial) WHERE revoked_at IS NOT NULL`,
	// Ping's write probe (store.Store.Ping): one row, rewritten by each
	// readiness check, so a full disk shows on /readyz.
	`CREATE TABLE store_probe (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		at INTEGER NOT NULL
	)`,
	`INSERT INTO store_probe(id, at) VALUES(1, 0)`,
	// Reconciliation (issue 13): what was learned of each certificate Vault
	// stores, so each serial is read from Vault once, ever (revocation is
	// refreshed from Vault's revoked list); each run with its progress and
	// counts; and the last run's entries, which the page shows at once.
	`CREATE TABLE vault_certs (
		serial    TEXT PRIMARY KEY,
		subject   TEXT NOT NULL,
		not_after INTEGER NOT NULL,
		revoked   INTEGER NOT NULL,
		kind      TEXT NOT NULL
	)`,
	`CREATE TABLE reconcile_runs (
		id              INTEGER PRIMARY KEY,
		by_user         TEXT NOT NULL,
		state           TEXT NOT NULL,
		started_at      INTEGER NOT NULL,
		finished_at     INTEGER,
		error           TEXT NOT NULL DEFAULT '',
		listed          INTEGER NOT NULL DEFAULT 0,
		to_read         INTEGER NOT NULL DEFAULT 0,
		done_read       INTEGER NOT NULL DEFAULT 0,
		vault_reads     INTEGER NOT NULL DEFAULT 0,
		vault_total     INTEGER NOT NULL DEFAULT 0,
		inventory_total INTEGER NOT NULL DEFAULT 0,
		vault_only      INTEGER NOT NULL DEFAULT 0,
		inventory_only  INTEGER NOT NULL DEFAULT 0,
		state_mismatch  INTEGER NOT NULL DEFAULT 0,
		known           INTEGER NOT NULL DEFAULT 0
	)`,
	`CREATE TABLE reconcile_results (
		run_id    INTEGER NOT NULL,
		grp       TEXT NOT NULL,
		serial    TEXT NOT NULL,
		subject   TEXT NOT NULL,
		not_after INTEGER NOT NULL,
		revoked   INTEGER NOT NULL,
		PRIMARY KEY(run_id, grp, serial)
	)`,
	// Where the key was made (issue 15): 'vault' for the server path,
	// 'device' for a CSR from the browser. Rows the device path wrote before
	// this column carried 'device' as their encryption (the file's own
	// encryption was not recorded then, so it stays unknown).
	`ALTER TABLE certificates ADD COLUMN key_origin TEXT NOT NULL DEFAULT 'vault'`,
	`UPDATE certificates SET key_origin = 'device' WHERE encryption = 'device'`,
	// The inventory report's counts (issue 13): how many certificates,
	// unrevoked and revoked, expire on each UTC day (day = not_after in
	// whole days since 1970, rounded down). Kept by triggers in the same
	// transaction as every write to certificates, whoever makes it (a
	// replica of an older version, a restore, sqlite3 by hand), so the
	// counts are exact; a state at a moment is a sum over these rows plus
	// one day's range of certificates_expiry (sqlstore/inventory.go).
	`CREATE TABLE certificate_days (
		day       INTEGER PRIMARY KEY,
		unrevoked INTEGER NOT NULL DEFAULT 0,
		revoked   INTEGER NOT NULL DEFAULT 0
	)`,
	`CREATE TRIGGER certificate_days_insert AFTER INSERT ON certificates BEGIN
		INSERT INTO certificate_days(day, unrevoked, revoked)
			VALUES(` + sqliteDay("NEW.not_after") + `, NEW.revoked_at IS NULL, NEW.revoked_at IS NOT NULL)
			ON CONFLICT(day) DO UPDATE SET unrevoked = unrevoked + excluded.unrevoked, revoked = revoked + excluded.revoked;
	END`,
	`CREATE TRIGGER certificate_days_update AFTER UPDATE OF not_after, revoked_at ON certificates
	WHEN OLD.not_after IS NOT NEW.not_after OR (OLD.revoked_at IS NULL) <> (NEW.revoked_at IS NULL) BEGIN
		UPDATE certificate_days SET unrevoked = unrevoked - (OLD.revoked_at IS NULL), revoked = revoked - (OLD.revoked_at IS NOT NULL)
			WHERE day = ` + sqliteDay("OLD.not_after") + `;
		INSERT INTO certificate_days(day, unrevoked, revoked)
			VALUES(` + sqliteDay("NEW.not_after") + `, NEW.revoked_at IS NULL, NEW.revoked_at IS NOT NULL)
			ON CONFLICT(day) DO UPDATE SET unrevoked = unrevoked + excluded.unrevoked, revoked = revoked + excluded.revoked;
	END`,
	`CREATE TRIGGER certificate_days_delete AFTER DELETE ON certificates BEGIN
		UPDATE certificate_days SET unrevoked = unrevoked - (OLD.revoked_at IS NULL), revoked = revoked - (OLD.revoked_at IS NOT NULL)
			WHERE day = ` + sqliteDay("OLD.not_after") + `;
	END`,
	// The rows already there (a one-time pass, ~1 s at 1,000,000 rows).
	`INSERT INTO certificate_days(day, unrevoked, revoked)
		SELECT ` + sqliteDay("not_after") + `, SUM(revoked_at IS NULL), SUM(revoked_at IS NOT NULL)
		FROM certificates GROUP BY 1`,
	// Whether the inventory changed since a reconciliation last looked
	// (the triggers see every change, the portal's or anyone's with the
	// file): a repeat run that finds Vault as the cache has it and this
	// flag clear keeps the last run's results instead of computing them
	// again (results_run: the run whose entries it shows; 0: its own).
	`CREATE TABLE reconcile_state (
		id                INTEGER PRIMARY KEY CHECK (id = 1),
		inventory_changed INTEGER NOT NULL
	)`,
	`INSERT INTO reconcile_state(id, inventory_changed) VALUES(1, 1)`,
	`CREATE TRIGGER certificates_changed_insert AFTER INSERT ON certificates
		WHEN NOT (SELECT inventory_changed FROM reconcile_state WHERE id = 1)
		BEGIN UPDATE reconcile_state SET inventory_changed = 1 WHERE id = 1; END`,
	`CREATE TRIGGER certificates_changed_update AFTER UPDATE ON certificates
		WHEN NOT (SELECT inventory_changed FROM reconcile_state WHERE id = 1)
		BEGIN UPDATE reconcile_state SET inventory_changed = 1 WHERE id = 1; END`,
	`CREATE TRIGGER certificates_changed_delete AFTER DELETE ON certificates
		WHEN NOT (SELECT inventory_changed FROM reconcile_state WHERE id = 1)
		BEGIN UPDATE reconcile_state SET inventory_changed = 1 WHERE id = 1; END`,
	`ALTER TABLE reconcile_runs ADD COLUMN results_run INTEGER NOT NULL DEFAULT 0`,
	// Inventory rows Vault does not hold that had expired (tidied away):
	// counted with the run, not listed as inventory_only entries.
	`ALTER TABLE reconcile_runs ADD COLUMN expired_tidied INTEGER NOT NULL DEFAULT 0`,
	// A repeat run's mismatch candidates (sqlstore.MismatchCandidates)
	// from the revoked side of each table rather than a walk of the whole
	// cache: the cache's revoked certificates looked up among the active
	// inventory, and the inventory's revoked ones (certificates_revoked)
	// looked up among the cache's unrevoked ones. The kind literal is
	// store.VaultKindCA; a query must spell it the same way for a planner
	// to see that the index covers it.
	`CREATE INDEX vault_certs_revoked ON vault_certs(serial) WHERE revoked AND kind <> 'ca'`,
	`CREATE INDEX vault_certs_unrevoked ON vault_certs(serial) WHERE NOT revoked AND kind <> 'ca'`,
	// Every run's merge of Vault's list with the cache (VaultCertStates)
	// reads serial, revocation and kind of every cached certificate: from
	// this index alone, not the table's rows (100,000 rows: 107 against
	// 176 ms on SQLite).
	`CREATE INDEX vault_certs_states ON vault_certs(serial, revoked, kind)`,
	// A session moved to a new id (a step-up, a role gained) leaves a
	// forwarding row at the old id for a short grace, so that a browser
	// whose answer with the new cookie was lost is not logged out
	// (session.MoveGrace): the new id, encrypted by the session layer. A
	// column of a table the portal role already writes: no new grant.
	`ALTER TABLE sessions ADD COLUMN moved_to BLOB`,
}

// sqliteDay is the UTC day of a millisecond time column, rounded down as
// sqlstore's dayOf rounds (SQLite's / truncates towards zero).
func sqliteDay(col string) string {
	return "(" + col + " / 86400000 - (" + col + " % 86400000 < 0))"
}

// rebuildDailySQL recomputes the chart counters from the trail itself; the
// action lists are audit.ChartIssued and audit.ChartRevoked.
const rebuildDailySQL = `INSERT OR REPLACE INTO audit_daily(day, issued, revoked, failed_logins)
	SELECT time_us / 86400000000,
		SUM(action IN ('certificate.issue', 'certificate.issue_on_behalf') AND outcome = 'success'),
		SUM(action IN ('certificate.revoke', 'certificate.reissue') AND outcome = 'success'),
		SUM(action = 'login' AND outcome = 'failure')
	FROM audit_events GROUP BY time_us / 86400000000`

// RebuildAuditDaily recomputes the chart counters (after a bulk load).
func (s *DB) RebuildAuditDaily(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, rebuildDailySQL); err != nil {
		return fmt.Errorf("rebuild daily counts: %w", err)
	}
	return nil
}

func (s *DB) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("migrate: database schema %d is newer than this binary (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate step %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return tx.Commit()
}

// Close closes the database.
func (s *DB) Close() error {
	s.stopWriter()
	s.Store.Close()
	return s.db.Close()
}
