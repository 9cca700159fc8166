package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// stateCond is the WHERE condition for an inventory state at at; its
// placeholders start at $(len(args)+1).
func stateCond(state string, at time.Time, args []any) (string, []any, error) {
	now := ms(at)
	ph := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	switch state {
	case "":
		return "TRUE", args, nil
	case store.StateActive:
		return "revoked_at IS NULL AND not_after > " + ph(now), args, nil
	case store.StateExpiring7:
		return "revoked_at IS NULL AND not_after > " + ph(now) + " AND not_after <= " + ph(now.Add(7*24*time.Hour)), args, nil
	case store.StateExpiring30:
		return "revoked_at IS NULL AND not_after > " + ph(now) + " AND not_after <= " + ph(now.Add(30*24*time.Hour)), args, nil
	case store.StateExpired:
		return "revoked_at IS NULL AND not_after <= " + ph(now), args, nil
	case store.StateRevoked:
		return "revoked_at IS NOT NULL", args, nil
	}
	return "", nil, fmt.Errorf("inventory: unknown state %q", state)
}

func (s *DB) InventoryCounts(ctx context.Context, at time.Time) (store.InventoryCounts, error) {
	now := ms(at)
	var c store.InventoryCounts
	err := s.pool.QueryRow(ctx, `SELECT
		COUNT(*) FILTER (WHERE revoked_at IS NULL AND not_after > $1),
		COUNT(*) FILTER (WHERE revoked_at IS NULL AND not_after > $1 AND not_after <= $2),
		COUNT(*) FILTER (WHERE revoked_at IS NULL AND not_after > $1 AND not_after <= $3),
		COUNT(*) FILTER (WHERE revoked_at IS NULL AND not_after <= $1),
		COUNT(*) FILTER (WHERE revoked_at IS NOT NULL)
		FROM certificates`, now, now.Add(7*24*time.Hour), now.Add(30*24*time.Hour)).
		Scan(&c.Active, &c.Expiring7, &c.Expiring30, &c.Expired, &c.Revoked)
	if err != nil {
		return c, fmt.Errorf("inventory counts: %w", err)
	}
	return c, nil
}

func (s *DB) InventoryByUser(ctx context.Context, at time.Time, afterUser string, limit int) ([]store.UserSummary, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT username,
		COUNT(*) FILTER (WHERE revoked_at IS NULL AND not_after > $1), COUNT(*)
		FROM certificates WHERE username > $2 GROUP BY username ORDER BY username LIMIT $3`, ms(at), afterUser, limit)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inventory by user: %w", err)
	}
	return out, nil
}

func inventoryQuery(f store.InventoryFilter) (string, []any, error) {
	cond, args, err := stateCond(f.State, f.At, nil)
	if err != nil {
		return "", nil, err
	}
	// COLLATE "C": serial order is byte order, as SQLite's, whatever the
	// database's collation; keyset pages then agree with it.
	args = append(args, f.AfterSerial)
	q := `SELECT ` + certColumns + ` FROM certificates WHERE ` + cond + fmt.Sprintf(` AND serial COLLATE "C" > $%d`, len(args))
	if f.Username != "" {
		args = append(args, f.Username)
		q += fmt.Sprintf(` AND username = $%d`, len(args))
	}
	return q + ` ORDER BY serial COLLATE "C"`, args, nil
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
	args = append(args, limit)
	var out []*store.Certificate
	err = s.streamInventoryQuery(ctx, q+fmt.Sprintf(` LIMIT $%d`, len(args)), args, func(c *store.Certificate) error {
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

func (s *DB) streamInventoryQuery(ctx context.Context, q string, args []any, fn func(*store.Certificate) error) error {
	rows, err := s.pool.Query(ctx, q, args...)
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
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}
