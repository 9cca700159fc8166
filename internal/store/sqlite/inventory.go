package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// stateCond is the WHERE condition for an inventory state at at (times in
// milliseconds, as the table stores them).
func stateCond(state string, at time.Time) (string, []any, error) {
	now := at.UnixMilli()
	day := int64(24 * time.Hour / time.Millisecond)
	switch state {
	case "":
		return "1=1", nil, nil
	case store.StateActive:
		return "revoked_at IS NULL AND not_after > ?", []any{now}, nil
	case store.StateExpiring7:
		return "revoked_at IS NULL AND not_after > ? AND not_after <= ?", []any{now, now + 7*day}, nil
	case store.StateExpiring30:
		return "revoked_at IS NULL AND not_after > ? AND not_after <= ?", []any{now, now + 30*day}, nil
	case store.StateExpired:
		return "revoked_at IS NULL AND not_after <= ?", []any{now}, nil
	case store.StateRevoked:
		return "revoked_at IS NOT NULL", nil, nil
	}
	return "", nil, fmt.Errorf("inventory: unknown state %q", state)
}

func (s *DB) InventoryCounts(ctx context.Context, at time.Time) (store.InventoryCounts, error) {
	now := at.UnixMilli()
	day := int64(24 * time.Hour / time.Millisecond)
	var c store.InventoryCounts
	err := s.db.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND not_after > ?1 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND not_after > ?1 AND not_after <= ?2 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND not_after > ?1 AND not_after <= ?3 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN revoked_at IS NULL AND not_after <= ?1 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END), 0)
		FROM certificates`, now, now+7*day, now+30*day).Scan(&c.Active, &c.Expiring7, &c.Expiring30, &c.Expired, &c.Revoked)
	if err != nil {
		return c, fmt.Errorf("inventory counts: %w", err)
	}
	return c, nil
}

func (s *DB) InventoryByUser(ctx context.Context, at time.Time, afterUser string, limit int) ([]store.UserSummary, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT username,
		SUM(CASE WHEN revoked_at IS NULL AND not_after > ? THEN 1 ELSE 0 END), COUNT(*)
		FROM certificates WHERE username > ? GROUP BY username ORDER BY username LIMIT ?`, at.UnixMilli(), afterUser, limit)
	if err != nil {
		return nil, fmt.Errorf("inventory by user: %w", err)
	}
	defer rows.Close()
	var out []store.UserSummary
	for rows.Next() {
		var u store.UserSummary
		if err := rows.Scan(&u.Username, &u.Active, &u.Total); err != nil {
			return nil, fmt.Errorf("inventory by user: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func inventoryQuery(f store.InventoryFilter) (string, []any, error) {
	cond, args, err := stateCond(f.State, f.At)
	if err != nil {
		return "", nil, err
	}
	q := `SELECT ` + certColumns + ` FROM certificates WHERE ` + cond + ` AND serial > ?`
	args = append(args, f.AfterSerial)
	if f.Username != "" {
		q += ` AND username = ?`
		args = append(args, f.Username)
	}
	return q + ` ORDER BY serial`, args, nil
}

func (s *DB) ListInventory(ctx context.Context, f store.InventoryFilter) ([]*store.Certificate, error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	q, args, err := inventoryQuery(f)
	if err != nil {
		return nil, err
	}
	var out []*store.Certificate
	err = s.streamInventoryQuery(ctx, q+` LIMIT ?`, append(args, limit), func(c *store.Certificate) error {
		out = append(out, c)
		return nil
	})
	return out, err
}

func (s *DB) StreamInventory(ctx context.Context, f store.InventoryFilter, fn func(*store.Certificate) error) error {
	q, args, err := inventoryQuery(f)
	if err != nil {
		return err
	}
	return s.streamInventoryQuery(ctx, q, args, fn)
}

// streamInventoryQuery runs an inventory query and hands each row to fn.
func (s *DB) streamInventoryQuery(ctx context.Context, q string, args []any, fn func(*store.Certificate) error) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return rows.Err()
}
