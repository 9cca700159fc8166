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

// InventoryCounts counts each state with an index range of its own rather
// than one pass over the table: the unrevoked states from the partial
// indexes certificates_expiry and certificates_active, revoked from
// certificates_revoked. At 1,000,000 rows in SQLite that took ~85 ms
// against ~250 ms for one scan with a FILTER per state, measured side by
// side (BenchmarkInventoryQueries, docs/benchmarks.md).
func (s *Store) InventoryCounts(ctx context.Context, at time.Time) (store.InventoryCounts, error) {
	var c store.InventoryCounts
	err := s.conn().queryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > ?1),
		(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > ?1 AND not_after <= ?2),
		(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > ?1 AND not_after <= ?3),
		(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after <= ?1),
		(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL)`,
		s.d.Time(at), s.d.Time(at.Add(7*24*time.Hour)), s.d.Time(at.Add(30*24*time.Hour))).
		Scan(&c.Active, &c.Expiring7, &c.Expiring30, &c.Expired, &c.Revoked)
	if err != nil {
		return c, fmt.Errorf("inventory counts: %w", err)
	}
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
