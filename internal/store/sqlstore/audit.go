package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

const auditColumns = `id, time_us, actor, subject, action, outcome, client_ip, user_agent, request_id, serial, details, prev_hash, hash`

// dayMicros is a UTC day in the microseconds time_us counts.
const dayMicros = int64(24 * time.Hour / time.Microsecond)

// appendAudit chains e after the last event; it runs inside a write
// transaction, which orders appends: the dialect's audit lock (PostgreSQL,
// across replicas, taken last so that its holder waits for nothing else),
// or SQLite's single writer.
func (s *Store) appendAudit(ctx context.Context, x q, e *audit.Event) error {
	if s.d.LockAudit != "" {
		if _, err := x.exec(ctx, s.d.LockAudit); err != nil {
			return fmt.Errorf("append audit: lock: %w", err)
		}
	}
	storable(e)
	var prev audit.Event
	err := x.queryRow(ctx, `SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1`).Scan(&prev.ID, &prev.Hash)
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
	_, err = x.exec(ctx, `INSERT INTO audit_events(`+auditColumns+`) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		e.ID, e.Time.UnixMicro(), e.Actor, e.Subject, e.Action, e.Outcome, e.ClientIP, e.UserAgent, e.RequestID,
		e.Serial, e.Details, e.PrevHash, e.Hash)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if col := dailyColumn(e.Action, e.Outcome); col != "" && s.d.DailyCounters {
		if _, err := x.exec(ctx, `INSERT INTO audit_daily(day, `+col+`) VALUES(?, 1)
			ON CONFLICT(day) DO UPDATE SET `+col+` = `+col+` + 1`, e.Time.UnixMicro()/dayMicros); err != nil {
			return fmt.Errorf("append audit: daily count: %w", err)
		}
	}
	return nil
}

// dailyColumn is the activity chart's counter an event adds to, "" for none.
func dailyColumn(action, outcome string) string {
	switch {
	case slices.Contains(audit.ChartIssued, action) && outcome == audit.OutcomeSuccess:
		return "issued"
	case slices.Contains(audit.ChartRevoked, action) && outcome == audit.OutcomeSuccess:
		return "revoked"
	case action == audit.ActionLogin && outcome == audit.OutcomeFailure:
		return "failed_logins"
	}
	return ""
}

// storable replaces what a PostgreSQL text column cannot hold — NUL and
// invalid UTF-8, both of which a client can put in a User-Agent or a login
// name — with U+FFFD, in both stores, so that they keep the same trail.
// Failing instead would let any client make the action being audited fail;
// and it happens before Seal, so the hash covers exactly what is stored
// and the chain still verifies.
func storable(e *audit.Event) {
	for _, f := range []*string{&e.Actor, &e.Subject, &e.Action, &e.Outcome, &e.ClientIP, &e.UserAgent, &e.RequestID, &e.Serial, &e.Details} {
		if !utf8.ValidString(*f) || strings.IndexByte(*f, 0) >= 0 {
			*f = strings.ReplaceAll(strings.ToValidUTF8(*f, "\uFFFD"), "\x00", "\uFFFD")
		}
	}
}

func (s *Store) AppendAudit(ctx context.Context, e *audit.Event) error {
	return s.write(ctx, func(x q) error { return s.appendAudit(ctx, x, e) })
}

func (s *Store) AppendAuditDeferred(ctx context.Context, e *audit.Event) error {
	return s.writeDeferred(ctx, func(x q) error { return s.appendAudit(ctx, x, e) })
}

func (s *Store) RecordIssuance(ctx context.Context, reservation string, c *store.Certificate, e *audit.Event) error {
	// Its caller derives the .p12's keys meanwhile (portal.Service.issue),
	// so the commit may wait a little for company; a device-key signing,
	// which has no .p12 to build, waits at most overlapHold (0.5 ms) more.
	return s.writeOverlapped(ctx, func(x q) error {
		if err := s.insertCertificate(ctx, x, c); err != nil {
			return err
		}
		if err := releaseReservation(ctx, x, reservation); err != nil {
			return err
		}
		return s.appendAudit(ctx, x, e)
	})
}

func (s *Store) RecordRevocation(ctx context.Context, serial string, r store.Revocation, e *audit.Event) error {
	return s.write(ctx, func(x q) error {
		if err := s.markRevoked(ctx, x, serial, r); err != nil {
			return err
		}
		return s.appendAudit(ctx, x, e)
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

func (s *Store) QueryAudit(ctx context.Context, f store.AuditFilter) ([]*audit.Event, error) {
	where, args := auditWhere(f)
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	// The filter picks the page's ids through an index, so that what gets
	// sorted is ids (from a covering index scan), not whole rows; then the
	// page's rows are read by id. When the index does not follow id order
	// (a time window), sorting whole rows made a 7-day page over 1M events
	// 5x slower in SQLite: ~85 ms against ~16 ms.
	// Paging towards newer events takes the ids closest above AfterID.
	inner := "DESC"
	if f.AfterID > 0 {
		inner = "ASC"
	}
	rows, err := s.conn().query(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE id IN (SELECT id FROM audit_events`+
		where+` ORDER BY id `+inner+` LIMIT ?) ORDER BY id DESC`, append(args, limit)...)
	out, err := collect(rows, err, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("query audit: %w", err)
	}
	return out, nil
}

// StreamAudit reads the rows as the database sends them, one query and so
// one snapshot: a verify walks a chain that no concurrent append can
// change under it. In PostgreSQL the connection stays out of the pool
// until fn has seen every row.
func (s *Store) StreamAudit(ctx context.Context, f store.AuditFilter, fn func(*audit.Event) error) error {
	where, args := auditWhere(f)
	rows, err := s.conn().query(ctx, `SELECT `+auditColumns+` FROM audit_events`+where+` ORDER BY id ASC`, args...)
	return each("stream audit", rows, err, scanEvent, fn)
}

// AuditDaily counts by UTC day (days are whole: from and to are rounded
// down to their UTC day). Where the dialect keeps daily counters (SQLite,
// whose pure-Go engine takes ~400 ms to group a month of a busy trail) it
// reads them; otherwise it groups the trail, and dailyColumn classifies
// the groups exactly as it classifies each append.
func (s *Store) AuditDaily(ctx context.Context, from, to time.Time) ([]store.DayCount, error) {
	fromDay, toDay := from.UnixMicro()/dayMicros, (to.UnixMicro()+dayMicros-1)/dayMicros
	var out []store.DayCount
	if s.d.DailyCounters {
		rows, err := s.conn().query(ctx, `SELECT day, issued, revoked, failed_logins FROM audit_daily
			WHERE day >= ? AND day < ? ORDER BY day`, fromDay, toDay)
		out, err = collect(rows, err, func(r scanner) (store.DayCount, error) {
			var d int64
			var c store.DayCount
			err := r.Scan(&d, &c.Issued, &c.Revoked, &c.FailedLogins)
			c.Day = time.UnixMicro(d * dayMicros).UTC()
			return c, err
		})
		if err != nil {
			return nil, fmt.Errorf("audit daily: %w", err)
		}
		return out, nil
	}
	rows, err := s.conn().query(ctx, `SELECT time_us / ?1 AS d, action, outcome, COUNT(*) FROM audit_events
		WHERE time_us >= ?2 AND time_us < ?3 GROUP BY d, action, outcome ORDER BY d`,
		dayMicros, fromDay*dayMicros, toDay*dayMicros)
	err = each("audit daily", rows, err, func(r scanner) (dayGroup, error) {
		var g dayGroup
		err := r.Scan(&g.day, &g.action, &g.outcome, &g.n)
		return g, err
	}, func(g dayGroup) error {
		col := dailyColumn(g.action, g.outcome)
		if col == "" {
			return nil
		}
		if len(out) == 0 || out[len(out)-1].Day.UnixMicro() != g.day*dayMicros {
			out = append(out, store.DayCount{Day: time.UnixMicro(g.day * dayMicros).UTC()})
		}
		c := &out[len(out)-1]
		switch col {
		case "issued":
			c.Issued += g.n
		case "revoked":
			c.Revoked += g.n
		case "failed_logins":
			c.FailedLogins += g.n
		}
		return nil
	})
	return out, err
}

// dayGroup is one day's count of one action and outcome.
type dayGroup struct {
	day             int64
	action, outcome string
	n               int
}
