// Package postgres implements store.Store on PostgreSQL (pgx), the store that
// several portal replicas share.
//
// # Roles
//
// Whoever owns audit_events can disable its append-only trigger, so in
// production the portal should not connect as the owner. The operator lets
// an owner role create the schema (start the portal once with its DSN, and
// again after each upgrade that adds a migration), then runs, as that owner:
//
//	GRANT USAGE ON SCHEMA public TO certportal;
//	GRANT SELECT ON schema_migrations TO certportal;
//	GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, certificates, issuance_reservations, login_attempts TO certportal;
//	GRANT SELECT, INSERT ON audit_events TO certportal;
//	GRANT SELECT, INSERT, UPDATE ON notifications, user_prefs TO certportal;
//	GRANT USAGE ON SEQUENCE notifications_id_seq TO certportal;
//	GRANT SELECT, INSERT, DELETE ON mfa_enrolments TO certportal;
//	GRANT SELECT, UPDATE ON store_probe TO certportal;
//	GRANT SELECT, INSERT, UPDATE, DELETE ON vault_certs, reconcile_runs, reconcile_results TO certportal;
//	GRANT USAGE ON SEQUENCE reconcile_runs_id_seq TO certportal;
//	GRANT SELECT, INSERT, UPDATE, DELETE ON certificate_days TO certportal;
//	GRANT SELECT, UPDATE ON reconcile_state TO certportal;
//	REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM certportal;
//
// (the REVOKE matters where broader grants such as GRANT ALL ON ALL TABLES
// were made) and gives the portal replicas certportal's DSN. The database
// then refuses every change to an event whatever the trigger's state;
// TestRestrictedRole checks these statements are enough to run.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlstore"
)

// DB is a PostgreSQL-backed store: the shared SQL (sqlstore) with
// PostgreSQL's dialect on a pgx pool, and its schema. The pool serves
// database/sql (stdlib.OpenDBFromPool) for the shared SQL and pgx directly
// for migrations and session advisory locks.
type DB struct {
	*sqlstore.Store
	pool *pgxpool.Pool
	db   *sql.DB
}

var _ store.Store = (*DB)(nil)

// Open connects to the database at dsn (a postgres:// URL or keyword/value
// string, pool settings such as pool_max_conns included) and migrates it.
func Open(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse error quotes the DSN, password included.
		return nil, errors.New("open postgres: invalid DSN")
	}
	// pgxpool would wait two minutes for an unreachable host; a replica
	// that cannot reach its database should say so sooner. connect_timeout
	// in the DSN still wins.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	// Each background job (session sweep, reconciliation, offboarding)
	// holds a connection of its own for its lock while it runs; pgxpool's
	// default of max(4, CPUs) would leave requests one connection on a
	// small machine. pool_max_conns in the DSN still wins.
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, 10)
	}
	lost := &connLoss{}
	cfg.ConnConfig.Tracer = lost
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	lost.pool.Store(pool)
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	s := &DB{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	s.db = stdlib.OpenDBFromPool(pool)
	s.Store = sqlstore.New(s.db, &dialect, nil)
	return s, nil
}

// connLoss empties the pool as soon as one query finds its connection
// gone. A restart or failover of PostgreSQL ends every connection at once,
// but pgxpool only checks a connection that sat idle for a second before
// handing it out: under load each dead one would fail one more request
// after the server was back. One loss is taken as news about them all.
type connLoss struct {
	pool atomic.Pointer[pgxpool.Pool]
}

func (l *connLoss) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (l *connLoss) TraceQueryEnd(_ context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.Err == nil || !conn.IsClosed() {
		return
	}
	if p := l.pool.Load(); p != nil {
		// Idle connections close now, connections in use when they are
		// given back; new ones are dialled as requests need them.
		p.Reset()
	}
}

// migrations are applied in order; never edit one that has shipped, append.
// Text keys use the "C" collation so ordering and prefix matching are
// bytewise, as in SQLite, whatever locale the database was created with.
var migrations = []string{
	`CREATE TABLE sessions (
		id_hash    text COLLATE "C" PRIMARY KEY,
		data       bytea NOT NULL,
		created_at timestamptz NOT NULL,
		last_seen  timestamptz NOT NULL,
		expires_at timestamptz NOT NULL
	)`,
	`CREATE INDEX sessions_expires_at ON sessions(expires_at)`,
	`CREATE TABLE certificates (
		serial        text COLLATE "C" PRIMARY KEY,
		username      text COLLATE "C" NOT NULL,
		subject       text NOT NULL,
		key_type      text NOT NULL,
		encryption    text NOT NULL,
		issued_by     text NOT NULL,
		issued_at     timestamptz NOT NULL,
		not_after     timestamptz NOT NULL,
		revoked_at    timestamptz,
		revoke_reason text NOT NULL DEFAULT '',
		revoked_by    text NOT NULL DEFAULT '',
		ticket        text NOT NULL DEFAULT ''
	)`,
	`CREATE INDEX certificates_username ON certificates(username, issued_at)`,
	// The id is part of the hash chain, which must be gap-free: appendAudit
	// assigns it as the previous maximum + 1 under auditLock. A sequence
	// would leave a gap behind every rolled-back append. time_us holds the
	// microseconds the hash covers, so the time round-trips exactly.
	`CREATE TABLE audit_events (
		id         bigint PRIMARY KEY,
		time_us    bigint NOT NULL,
		actor      text COLLATE "C" NOT NULL,
		subject    text COLLATE "C" NOT NULL,
		action     text COLLATE "C" NOT NULL,
		outcome    text COLLATE "C" NOT NULL,
		client_ip  text NOT NULL,
		user_agent text NOT NULL,
		request_id text NOT NULL,
		serial     text COLLATE "C" NOT NULL,
		details    text NOT NULL,
		prev_hash  text NOT NULL,
		hash       text NOT NULL
	)`,
	// Keyset pages filter on one column and walk id downwards.
	`CREATE INDEX audit_actor ON audit_events(actor, id)`,
	`CREATE INDEX audit_subject ON audit_events(subject, id)`,
	`CREATE INDEX audit_action ON audit_events(action, outcome, id)`,
	`CREATE INDEX audit_serial ON audit_events(serial, id)`,
	`CREATE INDEX audit_time ON audit_events(time_us)`,
	// Append-only as far as a trigger can make it: the portal never updates,
	// deletes or truncates an event. A statement trigger refuses even
	// statements that match no row. The table's owner (or a superuser) can
	// still disable or drop it — see the package comment on roles for how an
	// operator takes that away from the portal; the hash chain is what
	// detects whatever is left (certportal audit verify).
	`CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
	END
	$$`,
	`CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
		FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()`,
	// The cap check on every issuance counts a user's active certificates.
	`CREATE INDEX certificates_active ON certificates(username, not_after) WHERE revoked_at IS NULL`,
	// A place under the active-certificate cap, held from before the Vault
	// call until RecordIssuance turns it into a certificate (or the issuance
	// fails and releases it); see store.Reservation.
	`CREATE TABLE issuance_reservations (
		id         text COLLATE "C" PRIMARY KEY,
		username   text COLLATE "C" NOT NULL,
		replaces   text COLLATE "C" NOT NULL DEFAULT '',
		created_at timestamptz NOT NULL,
		expires_at timestamptz NOT NULL
	)`,
	`CREATE INDEX issuance_reservations_username ON issuance_reservations(username, expires_at)`,
	// Failed-login runs per submitted username (a keyed hash of it), shared
	// by every replica, see store.LoginAttempts. Times in milliseconds, as
	// in SQLite, so both stores run the same arithmetic.
	`CREATE TABLE login_attempts (
		key      text COLLATE "C" PRIMARY KEY,
		count    integer NOT NULL,
		last_at  bigint NOT NULL,
		decision integer NOT NULL
	)`,
	`CREATE INDEX login_attempts_last_at ON login_attempts(last_at)`,
	// The user's own name for a certificate (issue 10); '' for older rows.
	`ALTER TABLE certificates ADD COLUMN label text NOT NULL DEFAULT ''`,
	// Expiry reminders (internal/notify): the scan reads one expiry band
	// of unrevoked certificates from this index, never the whole table.
	`CREATE INDEX certificates_expiry ON certificates(not_after) WHERE revoked_at IS NULL`,
	`CREATE TABLE notifications (
		id           bigserial PRIMARY KEY,
		serial       text COLLATE "C" NOT NULL,
		username     text COLLATE "C" NOT NULL,
		threshold_s  bigint NOT NULL,
		channel      text NOT NULL,
		state        text NOT NULL,
		attempts     integer NOT NULL DEFAULT 0,
		next_attempt timestamptz NOT NULL,
		lease_until  timestamptz NOT NULL DEFAULT 'epoch',
		lease        text NOT NULL DEFAULT '',
		last_error   text NOT NULL DEFAULT '',
		created_at   timestamptz NOT NULL,
		sent_at      timestamptz,
		UNIQUE(serial, threshold_s, channel)
	)`,
	`CREATE INDEX notifications_due ON notifications(next_attempt) WHERE state = 'pending'`,
	`CREATE INDEX notifications_lease ON notifications(lease_until) WHERE state = 'sending'`,
	`CREATE INDEX notifications_user ON notifications(username, id)`,
	`CREATE TABLE user_prefs (
		username   text COLLATE "C" PRIMARY KEY,
		lang       text NOT NULL,
		updated_at timestamptz NOT NULL
	)`,
	// The reminder scan reads issued_at and username of every row in its
	// band: a covering index answers it without touching the table.
	`DROP INDEX certificates_expiry`,
	`CREATE INDEX certificates_expiry ON certificates(not_after, issued_at, username) WHERE revoked_at IS NULL`,
	// One-time MFA enrolment links (store.Enrolments): the token's hash only.
	`CREATE TABLE mfa_enrolments (
		token_hash text COLLATE "C" PRIMARY KEY,
		username   text COLLATE "C" NOT NULL,
		created_by text NOT NULL,
		ticket     text NOT NULL,
		created_at bigint NOT NULL,
		expires_at bigint NOT NULL
	)`,
	`CREATE INDEX mfa_enrolments_username ON mfa_enrolments(username)`,
	// The inventory report (issue 13) counts revoked certificates from this
	// index, one index range per state instead of a table scan, and its
	// revoked drill-down pages through it in serial order.
	`CREATE INDEX certificates_revoked ON certificates(serial) WHERE revoked_at IS NOT NULL`,
	// Ping's write probe (store.Store.Ping): one row, rewritten by each
	// readiness check, so a read-only database or a full disk shows on
	// /readyz.
	`CREATE TABLE store_probe (
		id integer PRIMARY KEY CHECK (id = 1),
		at timestamptz NOT NULL
	)`,
	`INSERT INTO store_probe(id, at) VALUES(1, 'epoch')`,
	// Reconciliation (issue 13): what was learned of each certificate Vault
	// stores, so each serial is read from Vault once, ever (revocation is
	// refreshed from Vault's revoked list); each run with its progress and
	// counts; and the last run's entries, which the page shows at once.
	`CREATE TABLE vault_certs (
		serial    text COLLATE "C" PRIMARY KEY,
		subject   text NOT NULL,
		not_after timestamptz NOT NULL,
		revoked   boolean NOT NULL,
		kind      text NOT NULL
	)`,
	`CREATE TABLE reconcile_runs (
		id              bigserial PRIMARY KEY,
		by_user         text NOT NULL,
		state           text NOT NULL,
		started_at      timestamptz NOT NULL,
		finished_at     timestamptz,
		error           text NOT NULL DEFAULT '',
		listed          integer NOT NULL DEFAULT 0,
		to_read         integer NOT NULL DEFAULT 0,
		done_read       integer NOT NULL DEFAULT 0,
		vault_reads     integer NOT NULL DEFAULT 0,
		vault_total     integer NOT NULL DEFAULT 0,
		inventory_total integer NOT NULL DEFAULT 0,
		vault_only      integer NOT NULL DEFAULT 0,
		inventory_only  integer NOT NULL DEFAULT 0,
		state_mismatch  integer NOT NULL DEFAULT 0,
		known           integer NOT NULL DEFAULT 0
	)`,
	`CREATE TABLE reconcile_results (
		run_id    bigint NOT NULL,
		grp       text COLLATE "C" NOT NULL,
		serial    text COLLATE "C" NOT NULL,
		subject   text NOT NULL,
		not_after timestamptz NOT NULL,
		revoked   boolean NOT NULL,
		PRIMARY KEY(run_id, grp, serial)
	)`,
	// Where the key was made (issue 15): 'vault' for the server path,
	// 'device' for a CSR from the browser. Rows the device path wrote before
	// this column carried 'device' as their encryption (the file's own
	// encryption was not recorded then, so it stays unknown).
	`ALTER TABLE certificates ADD COLUMN key_origin text NOT NULL DEFAULT 'vault'`,
	`UPDATE certificates SET key_origin = 'device' WHERE encryption = 'device'`,
	// The inventory report's counts (issue 13): how many certificates,
	// unrevoked and revoked, expire on each UTC day (day = not_after in
	// whole days since 1970, rounded down). Kept by triggers in the same
	// transaction as every write to certificates, whoever makes it (a
	// replica of an older version during a rolling upgrade, a restore, psql
	// by hand), so the counts are exact; a state at a moment is a sum over
	// these rows plus one day's range of certificates_expiry
	// (sqlstore/inventory.go). The triggers are per statement, over its
	// transition tables: a statement changing many rows makes one update
	// per day it touches, in day order, rather than one per row (a million
	// updates of a few hundred rows in one transaction leave a million dead
	// versions no HOT pruning can remove until it ends, and every count
	// then reads them), and a revocation repeated changes nothing and
	// takes no lock. A write holds its days' rows until it commits.
	`CREATE TABLE certificate_days (
		day       bigint PRIMARY KEY,
		unrevoked bigint NOT NULL DEFAULT 0,
		revoked   bigint NOT NULL DEFAULT 0
	)`,
	`CREATE FUNCTION certificate_days_count() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF TG_OP = 'TRUNCATE' THEN
			DELETE FROM certificate_days;
		ELSIF TG_OP = 'INSERT' THEN
			INSERT INTO certificate_days AS d(day, unrevoked, revoked)
			SELECT floor(extract(epoch FROM not_after) / 86400)::bigint,
				COUNT(*) FILTER (WHERE revoked_at IS NULL), COUNT(*) FILTER (WHERE revoked_at IS NOT NULL)
			FROM new_rows GROUP BY 1 ORDER BY 1
			ON CONFLICT(day) DO UPDATE SET unrevoked = d.unrevoked + excluded.unrevoked, revoked = d.revoked + excluded.revoked;
		ELSIF TG_OP = 'DELETE' THEN
			INSERT INTO certificate_days AS d(day, unrevoked, revoked)
			SELECT floor(extract(epoch FROM not_after) / 86400)::bigint,
				-COUNT(*) FILTER (WHERE revoked_at IS NULL), -COUNT(*) FILTER (WHERE revoked_at IS NOT NULL)
			FROM old_rows GROUP BY 1 ORDER BY 1
			ON CONFLICT(day) DO UPDATE SET unrevoked = d.unrevoked + excluded.unrevoked, revoked = d.revoked + excluded.revoked;
		ELSE
			INSERT INTO certificate_days AS d(day, unrevoked, revoked)
			SELECT day, SUM(u), SUM(r) FROM (
				SELECT floor(extract(epoch FROM not_after) / 86400)::bigint AS day,
					-(revoked_at IS NULL)::int AS u, -(revoked_at IS NOT NULL)::int AS r FROM old_rows
				UNION ALL
				SELECT floor(extract(epoch FROM not_after) / 86400)::bigint,
					(revoked_at IS NULL)::int, (revoked_at IS NOT NULL)::int FROM new_rows
			) AS c GROUP BY day HAVING SUM(u) <> 0 OR SUM(r) <> 0 ORDER BY day
			ON CONFLICT(day) DO UPDATE SET unrevoked = d.unrevoked + excluded.unrevoked, revoked = d.revoked + excluded.revoked;
		END IF;
		RETURN NULL;
	END $$`,
	// CREATE TRIGGER locks certificates against writes until the migration
	// commits, so no write falls between the triggers and the backfill.
	`CREATE TRIGGER certificate_days_insert AFTER INSERT ON certificates
		REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION certificate_days_count()`,
	`CREATE TRIGGER certificate_days_update AFTER UPDATE ON certificates
		REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION certificate_days_count()`,
	`CREATE TRIGGER certificate_days_delete AFTER DELETE ON certificates
		REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION certificate_days_count()`,
	`CREATE TRIGGER certificate_days_truncate AFTER TRUNCATE ON certificates
		FOR EACH STATEMENT EXECUTE FUNCTION certificate_days_count()`,
	`INSERT INTO certificate_days(day, unrevoked, revoked)
		SELECT floor(extract(epoch FROM not_after) / 86400)::bigint,
			COUNT(*) FILTER (WHERE revoked_at IS NULL), COUNT(*) FILTER (WHERE revoked_at IS NOT NULL)
		FROM certificates GROUP BY 1`,
	// Whether the inventory changed since a reconciliation last looked
	// (the trigger sees every change, the portal's or anyone's with the
	// grants): a repeat run that finds Vault as the cache has it and this
	// flag clear keeps the last run's results instead of computing them
	// again (results_run: the run whose entries it shows; 0: its own). The
	// flag's row is written only by the first change after a run cleared
	// it, so issuances do not queue on it.
	`CREATE TABLE reconcile_state (
		id                integer PRIMARY KEY CHECK (id = 1),
		inventory_changed boolean NOT NULL
	)`,
	`INSERT INTO reconcile_state(id, inventory_changed) VALUES(1, true)`,
	`CREATE FUNCTION certificates_changed() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		UPDATE reconcile_state SET inventory_changed = true WHERE id = 1 AND NOT inventory_changed;
		RETURN NULL;
	END
	$$`,
	`CREATE TRIGGER certificates_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON certificates
		FOR EACH STATEMENT EXECUTE FUNCTION certificates_changed()`,
	`ALTER TABLE reconcile_runs ADD COLUMN results_run bigint NOT NULL DEFAULT 0`,
	// Inventory rows Vault does not hold that had expired (tidied away):
	// counted with the run, not listed as inventory_only entries. A column
	// of a table the portal role already writes: no new grant.
	`ALTER TABLE reconcile_runs ADD COLUMN expired_tidied integer NOT NULL DEFAULT 0`,
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
	`ALTER TABLE sessions ADD COLUMN moved_to bytea`,
}

// migrationLock is the pg_advisory_xact_lock key that serialises start-up
// migrations across replicas ("certport" in ASCII). Advisory locks are
// scoped to the database, so other databases on the server are unaffected.
const migrationLock int64 = 0x63657274706f7274

func (s *DB) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx) // a no-op after Commit
	// Replicas starting together queue here; each later one then finds the
	// schema current. The lock ends with the transaction, so a replica that
	// dies mid-migration cannot leave it held.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	// Not CREATE TABLE IF NOT EXISTS: that needs CREATE on the schema even
	// when the table exists, and a portal role restricted as the package
	// comment describes has none.
	var initialised bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&initialised); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !initialised {
		if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	var version int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("migrate: database schema %d is newer than this binary (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate step %d: %w", i+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations(version) VALUES($1)`, i+1); err != nil {
			return fmt.Errorf("migrate step %d: %w", i+1, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Close closes every pooled connection.
func (s *DB) Close() error {
	s.Store.Close()
	s.db.Close()
	s.pool.Close()
	return nil
}
