package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

const auditColumns = `id, time_us, actor, subject, action, outcome, client_ip, user_agent, request_id, serial, details, prev_hash, hash`

// auditLock is the pg_advisory_xact_lock key that serialises appends across
// replicas ("certaudt" in ASCII; distinct from migrationLock).
const auditLock int64 = 0x6365727461756474

// querier is the pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// appendAudit chains e after the last event. It must run inside a
// transaction: the advisory lock is held until that transaction ends, so
// the next append, on any replica, reads this event as the last one only
// once it is committed. Taking the lock last also means a transaction
// holding it never waits for anything else, so appends cannot deadlock
// with the inventory row locks taken before them.
func appendAudit(ctx context.Context, tx pgx.Tx, e *audit.Event) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, auditLock); err != nil {
		return fmt.Errorf("append audit: lock: %w", err)
	}
	storable(e)
	var prev audit.Event
	err := tx.QueryRow(ctx, `SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1`).Scan(&prev.ID, &prev.Hash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		e.ID = 1
		audit.Seal(e, nil)
	case err != nil:
		return fmt.Errorf("append audit: %w", err)
	default:
		e.ID = prev.ID + 1
		audit.Seal(e, &prev)
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_events(`+auditColumns+`) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
		e.ID, e.Time.UnixMicro(), e.Actor, e.Subject, e.Action, e.Outcome, e.ClientIP, e.UserAgent, e.RequestID,
		e.Serial, e.Details, e.PrevHash, e.Hash)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// storable replaces what a PostgreSQL text column cannot hold — NUL and
// invalid UTF-8, both of which a client can put in a User-Agent or a login
// name — with U+FFFD. Failing instead would let any client make the action
// being audited fail; and it happens before Seal, so the hash covers
// exactly what is stored and the chain still verifies.
func storable(e *audit.Event) {
	for _, f := range []*string{&e.Actor, &e.Subject, &e.Action, &e.Outcome, &e.ClientIP, &e.UserAgent, &e.RequestID, &e.Serial, &e.Details} {
		if !utf8.ValidString(*f) || strings.IndexByte(*f, 0) >= 0 {
			*f = strings.ReplaceAll(strings.ToValidUTF8(*f, "\uFFFD"), "\x00", "\uFFFD")
		}
	}
}

func (s *DB) AppendAudit(ctx context.Context, e *audit.Event) error {
	return s.inTx(ctx, func(tx pgx.Tx) error { return appendAudit(ctx, tx, e) })
}

// AppendAuditDeferred is AppendAudit: one PostgreSQL WAL flush already
// covers every commit waiting on it, so holding the commit gains nothing.
func (s *DB) AppendAuditDeferred(ctx context.Context, e *audit.Event) error {
	return s.AppendAudit(ctx, e)
}

func (s *DB) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (s *DB) RecordIssuance(ctx context.Context, reservation string, c *store.Certificate, e *audit.Event) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := insertCertificate(ctx, tx, c); err != nil {
			return err
		}
		if err := releaseReservation(ctx, tx, reservation); err != nil {
			return err
		}
		return appendAudit(ctx, tx, e)
	})
}

func (s *DB) RecordRevocation(ctx context.Context, serial string, r store.Revocation, e *audit.Event) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := markRevoked(ctx, tx, serial, r); err != nil {
			return err
		}
		return appendAudit(ctx, tx, e)
	})
}

// auditWhere builds the WHERE clause for f; its placeholders start at $1.
func auditWhere(f store.AuditFilter) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if f.Subject != "" {
		add("subject = $%d", f.Subject)
	}
	if f.Action != "" {
		add("action = $%d", f.Action)
	}
	if f.Outcome != "" {
		add("outcome = $%d", f.Outcome)
	}
	if f.Serial != "" {
		add("serial = $%d", f.Serial)
	}
	if !f.From.IsZero() {
		add("time_us >= $%d", f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		add("time_us < $%d", f.To.UnixMicro())
	}
	if f.BeforeID > 0 {
		add("id < $%d", f.BeforeID)
	}
	if f.AfterID > 0 {
		add("id > $%d", f.AfterID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func scanEvent(r pgx.Row) (*audit.Event, error) {
	var e audit.Event
	var us int64
	if err := r.Scan(&e.ID, &us, &e.Actor, &e.Subject, &e.Action, &e.Outcome, &e.ClientIP, &e.UserAgent, &e.RequestID,
		&e.Serial, &e.Details, &e.PrevHash, &e.Hash); err != nil {
		return nil, err
	}
	e.Time = time.UnixMicro(us).UTC()
	return &e, nil
}

func (s *DB) QueryAudit(ctx context.Context, f store.AuditFilter) ([]*audit.Event, error) {
	where, args := auditWhere(f)
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	args = append(args, limit)
	q := `SELECT ` + auditColumns + ` FROM audit_events` + where + fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args))
	if f.AfterID > 0 {
		// Paging towards newer events takes the ids closest above AfterID.
		q = `SELECT * FROM (SELECT ` + auditColumns + ` FROM audit_events` + where +
			fmt.Sprintf(` ORDER BY id ASC LIMIT $%d) page ORDER BY id DESC`, len(args))
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit: %w", err)
	}
	defer rows.Close()
	var out []*audit.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("query audit: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query audit: %w", err)
	}
	return out, nil
}

// StreamAudit reads the rows as the server sends them, one query and so one
// snapshot: a verify walks a chain that no concurrent append can change
// under it. The connection stays out of the pool until fn has seen every row.
func (s *DB) StreamAudit(ctx context.Context, f store.AuditFilter, fn func(*audit.Event) error) error {
	where, args := auditWhere(f)
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit_events`+where+` ORDER BY id ASC`, args...)
	if err != nil {
		return fmt.Errorf("stream audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return fmt.Errorf("stream audit: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("stream audit: %w", err)
	}
	return nil
}

// AuditDaily counts by UTC day, as SQLite does: the day index is time_us
// divided by a day's microseconds.
func (s *DB) AuditDaily(ctx context.Context, from, to time.Time) ([]store.DayCount, error) {
	const day = int64(24 * time.Hour / time.Microsecond)
	rows, err := s.pool.Query(ctx, `SELECT time_us / $1 AS d,
		COUNT(*) FILTER (WHERE action = ANY($4) AND outcome = $7),
		COUNT(*) FILTER (WHERE action = ANY($5) AND outcome = $7),
		COUNT(*) FILTER (WHERE action = $6 AND outcome = $8)
		FROM audit_events WHERE time_us >= $2 AND time_us < $3 AND (action = ANY($4) OR action = ANY($5) OR action = $6)
		GROUP BY d ORDER BY d`,
		day, from.UnixMicro(), to.UnixMicro(),
		audit.ChartIssued, audit.ChartRevoked, audit.ActionLogin, audit.OutcomeSuccess, audit.OutcomeFailure)
	if err != nil {
		return nil, fmt.Errorf("audit daily: %w", err)
	}
	defer rows.Close()
	var out []store.DayCount
	for rows.Next() {
		var d int64
		var c store.DayCount
		if err := rows.Scan(&d, &c.Issued, &c.Revoked, &c.FailedLogins); err != nil {
			return nil, fmt.Errorf("audit daily: %w", err)
		}
		c.Day = time.UnixMicro(d * day).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit daily: %w", err)
	}
	return out, nil
}
