package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// The inventory report is computed in the database: counts by state in one
// pass over the table, users and certificates paged by keyset (username,
// serial: both bytewise, COLLATE "C" in PostgreSQL, as in SQLite), and the
// CSV streamed row by row. No caller holds the inventory in memory.

// stateCond is the WHERE condition for an inventory state at at.
func (s *Store) stateCond(state string, at time.Time) (string, []any, error) {
	now, in7, in30 := s.d.Time(at), s.d.Time(at.Add(7*24*time.Hour)), s.d.Time(at.Add(30*24*time.Hour))
	switch state {
	case "":
		return "1=1", nil, nil
	case store.StateActive:
		return "revoked_at IS NULL AND not_after > ?", []any{now}, nil
	case store.StateExpiring7:
		return "revoked_at IS NULL AND not_after > ? AND not_after <= ?", []any{now, in7}, nil
	case store.StateExpiring30:
		return "revoked_at IS NULL AND not_after > ? AND not_after <= ?", []any{now, in30}, nil
	case store.StateExpired:
		return "revoked_at IS NULL AND not_after <= ?", []any{now}, nil
	case store.StateRevoked:
		return "revoked_at IS NOT NULL", nil, nil
	}
	return "", nil, fmt.Errorf("inventory: unknown state %q", state)
}

// The counts come from certificate_days, one row per UTC day with the
// number of unrevoked and revoked certificates whose not_after falls on it,
// which triggers keep in the same transaction as every write to
// certificates (the migrations in both stores). The number of unrevoked
// certificates expired by a moment t is then the sum of the days before
// t's day plus a count of t's own day up to t: a range of
// certificates_expiry holding one day's expiries, not the 200,000 active
// or 700,000 expired rows the old per-state index ranges read (130/199 ms
// p50/p95 at 1,000,000 rows; docs/benchmarks.md). The table has a row per
// day that ever had an expiry: about 365 a year.

const dayMillis = 24 * 60 * 60 * 1000

// dayOf is the UTC day of t as the triggers compute it: whole days since
// 1970, rounded down.
func dayOf(t time.Time) int64 {
	ms := t.UnixMilli()
	d := ms / dayMillis
	if ms%dayMillis < 0 {
		d--
	}
	return d
}

// expiredBy is the SQL for the number of unrevoked certificates with
// not_after <= t, taking three parameters from ?n: expiredByArgs(t).
func (s *Store) expiredBy(n int) string {
	return fmt.Sprintf(`(SELECT CAST(COALESCE(SUM(unrevoked), 0) AS BIGINT) FROM certificate_days WHERE day < ?%d)
		+ (SELECT COUNT(*) FROM certificates`+s.d.IndexHint("certificates_expiry")+`
			WHERE revoked_at IS NULL AND not_after >= ?%d AND not_after <= ?%d)`, n, n+1, n+2)
}

func (s *Store) expiredByArgs(t time.Time) []any {
	d := dayOf(t)
	return []any{d, s.d.Time(time.UnixMilli(d * dayMillis)), s.d.Time(t)}
}

// dayTotals is the SQL for all unrevoked and all revoked certificates.
const dayTotals = `(SELECT CAST(COALESCE(SUM(unrevoked), 0) AS BIGINT) FROM certificate_days),
		(SELECT CAST(COALESCE(SUM(revoked), 0) AS BIGINT) FROM certificate_days)`

// InventoryCounts is one statement, so one snapshot: the counts add up to
// the inventory at the moment it ran, in both stores (the day rows commit
// with the certificates they count).
func (s *Store) InventoryCounts(ctx context.Context, at time.Time) (store.InventoryCounts, error) {
	var c store.InventoryCounts
	var unrevoked, expired, by7, by30 int
	args := append(s.expiredByArgs(at), s.expiredByArgs(at.Add(7*24*time.Hour))...)
	args = append(args, s.expiredByArgs(at.Add(30*24*time.Hour))...)
	err := s.conn().queryRow(ctx, `SELECT `+dayTotals+`, `+s.expiredBy(1)+`, `+s.expiredBy(4)+`, `+s.expiredBy(7), args...).
		Scan(&unrevoked, &c.Revoked, &expired, &by7, &by30)
	if err != nil {
		return c, fmt.Errorf("inventory counts: %w", err)
	}
	c.Expired = expired
	c.Active = unrevoked - expired
	c.Expiring7 = by7 - expired
	c.Expiring30 = by30 - expired
	return c, nil
}

func (s *Store) InventoryByUser(ctx context.Context, at time.Time, afterUser string, limit int) ([]store.UserSummary, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.conn().query(ctx, `SELECT username,
		COUNT(*) FILTER (WHERE revoked_at IS NULL AND not_after > ?), COUNT(*)
		FROM certificates WHERE username > ? GROUP BY username ORDER BY username LIMIT ?`, s.d.Time(at), afterUser, limit)
	out, err := collect(rows, err, scanUserSummary)
	if err != nil {
		return nil, fmt.Errorf("inventory by user: %w", err)
	}
	return out, nil
}

func (s *Store) inventoryQuery(f store.InventoryFilter) (string, []any, error) {
	cond, args, err := s.stateCond(f.State, f.At)
	if err != nil {
		return "", nil, err
	}
	query := `SELECT ` + certColumns + ` FROM certificates WHERE ` + cond + ` AND serial > ?`
	args = append(args, f.AfterSerial)
	if f.Username != "" {
		query += ` AND username = ?`
		args = append(args, f.Username)
	}
	return query + ` ORDER BY serial`, args, nil
}

func (s *Store) ListInventory(ctx context.Context, f store.InventoryFilter) ([]*store.Certificate, error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	query, args, err := s.inventoryQuery(f)
	if err != nil {
		return nil, err
	}
	rows, err := s.conn().query(ctx, query+` LIMIT ?`, append(args, limit)...)
	out, err := collect(rows, err, scanCert)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return out, nil
}

// StreamInventory reads the rows as the database sends them, one query and
// so one snapshot (in PostgreSQL the connection stays out of the pool until
// fn has seen every row).
func (s *Store) StreamInventory(ctx context.Context, f store.InventoryFilter, fn func(*store.Certificate) error) error {
	query, args, err := s.inventoryQuery(f)
	if err != nil {
		return err
	}
	rows, err := s.conn().query(ctx, query, args...)
	return each("inventory", rows, err, scanCert, fn)
}

// ActiveUsers walks the certificates_active partial index: only unrevoked
// rows are in it, so the scan is over active users, not the inventory.
func (s *Store) ActiveUsers(ctx context.Context, at time.Time, afterUser string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.conn().query(ctx, `SELECT DISTINCT username FROM certificates
		WHERE revoked_at IS NULL AND not_after > ? AND username > ? ORDER BY username LIMIT ?`, s.d.Time(at), afterUser, limit)
	out, err := collect(rows, err, func(r scanner) (u string, err error) { return u, r.Scan(&u) })
	if err != nil {
		return nil, fmt.Errorf("active users: %w", err)
	}
	return out, nil
}

func (s *Store) CountActiveUsers(ctx context.Context, at time.Time) (int, error) {
	var n int
	err := s.conn().queryRow(ctx, `SELECT COUNT(DISTINCT username) FROM certificates
		WHERE revoked_at IS NULL AND not_after > ?`, s.d.Time(at)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count active users: %w", err)
	}
	return n, nil
}
