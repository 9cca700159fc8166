package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

const auditColumns = `id, time_us, actor, subject, action, outcome, client_ip, user_agent, request_id, serial, details, prev_hash, hash`

// execer is a *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// appendAudit chains e after the last event. Called inside a write
// transaction (BEGIN IMMEDIATE), which serialises appends.
func appendAudit(ctx context.Context, x execer, e *audit.Event) error {
	var prev audit.Event
	err := x.QueryRowContext(ctx, `SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1`).Scan(&prev.ID, &prev.Hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		e.ID = 1
		audit.Seal(e, nil)
	case err != nil:
		return fmt.Errorf("append audit: %w", err)
	default:
		e.ID = prev.ID + 1
		audit.Seal(e, &prev)
	}
	_, err = x.ExecContext(ctx, `INSERT INTO audit_events(`+auditColumns+`) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		e.ID, e.Time.UnixMicro(), e.Actor, e.Subject, e.Action, e.Outcome, e.ClientIP, e.UserAgent, e.RequestID,
		e.Serial, e.Details, e.PrevHash, e.Hash)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	col := ""
	switch {
	case slices.Contains(audit.ChartIssued, e.Action) && e.Outcome == audit.OutcomeSuccess:
		col = "issued"
	case slices.Contains(audit.ChartRevoked, e.Action) && e.Outcome == audit.OutcomeSuccess:
		col = "revoked"
	case e.Action == audit.ActionLogin && e.Outcome == audit.OutcomeFailure:
		col = "failed_logins"
	}
	if col != "" {
		day := e.Time.UnixMicro() / int64(24*time.Hour/time.Microsecond)
		if _, err := x.ExecContext(ctx, `INSERT INTO audit_daily(day, `+col+`) VALUES(?, 1)
			ON CONFLICT(day) DO UPDATE SET `+col+` = `+col+` + 1`, day); err != nil {
			return fmt.Errorf("append audit: daily count: %w", err)
		}
	}
	return nil
}

func (s *DB) AppendAudit(ctx context.Context, e *audit.Event) error {
	return s.write(func(tx *wtx) error { return appendAudit(ctx, tx, e) })
}

func (s *DB) AppendAuditDeferred(ctx context.Context, e *audit.Event) error {
	return s.writeDeferred(func(tx *wtx) error { return appendAudit(ctx, tx, e) })
}

func (s *DB) RecordIssuance(ctx context.Context, reservation string, c *store.Certificate, e *audit.Event) error {
	return s.write(func(tx *wtx) error {
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
	return s.write(func(tx *wtx) error {
		if err := markRevoked(ctx, tx, serial, r); err != nil {
			return err
		}
		return appendAudit(ctx, tx, e)
	})
}

func auditWhere(f store.AuditFilter) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		conds = append(conds, cond)
		args = append(args, v)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Subject != "" {
		add("subject = ?", f.Subject)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.Outcome != "" {
		add("outcome = ?", f.Outcome)
	}
	if f.Serial != "" {
		add("serial = ?", f.Serial)
	}
	if !f.From.IsZero() {
		add("time_us >= ?", f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		add("time_us < ?", f.To.UnixMicro())
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	if f.AfterID > 0 {
		add("id > ?", f.AfterID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func scanEvent(r scanner) (*audit.Event, error) {
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
	// The filter picks the page's ids through an index, so that what gets
	// sorted is ids (from a covering index scan), not whole rows; then the
	// page's rows are read by id. When the index does not follow id order
	// (a time window), sorting whole rows made a 7-day page over 1M events
	// 5x slower: ~85 ms against ~16 ms.
	// Paging towards newer events takes the ids closest above AfterID.
	inner := "DESC"
	if f.AfterID > 0 {
		inner = "ASC"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE id IN (SELECT id FROM audit_events`+
		where+` ORDER BY id `+inner+` LIMIT ?) ORDER BY id DESC`, append(args, limit)...)
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
	return out, rows.Err()
}

func (s *DB) StreamAudit(ctx context.Context, f store.AuditFilter, fn func(*audit.Event) error) error {
	where, args := auditWhere(f)
	rows, err := s.db.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_events`+where+` ORDER BY id ASC`, args...)
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
	return rows.Err()
}

func (s *DB) AuditDaily(ctx context.Context, from, to time.Time) ([]store.DayCount, error) {
	const day = int64(24 * time.Hour / time.Microsecond)
	// Days are whole: from and to are rounded down to their UTC day.
	rows, err := s.db.QueryContext(ctx, `SELECT day, issued, revoked, failed_logins FROM audit_daily
		WHERE day >= ? AND day < ? ORDER BY day`, from.UnixMicro()/day, (to.UnixMicro()+day-1)/day)
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
	return out, rows.Err()
}
