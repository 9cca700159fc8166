package postgres

import (
	"context"
	"fmt"
	"time"
)

// ActiveUsers walks the certificates_active partial index (unrevoked rows
// only), so the scan is over active users, not the inventory.
func (s *DB) ActiveUsers(ctx context.Context, at time.Time, afterUser string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT username FROM certificates
		WHERE revoked_at IS NULL AND not_after > $1 AND username > $2 ORDER BY username LIMIT $3`, ms(at), afterUser, limit)
	if err != nil {
		return nil, fmt.Errorf("active users: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("active users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (s *DB) CountActiveUsers(ctx context.Context, at time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT COUNT(DISTINCT username) FROM certificates
		WHERE revoked_at IS NULL AND not_after > $1`, ms(at)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count active users: %w", err)
	}
	return n, nil
}

// TryLock takes a session advisory lock on a connection of its own, held
// until unlock: replicas sharing the database exclude each other, and a
// replica that dies mid-sweep releases the lock with its connection.
func (s *DB) TryLock(ctx context.Context, name string) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	key := "certportal:" + name
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return func() {
		// Unlock on a context of its own: the sweep's may have ended. A
		// failed unlock closes the connection, which releases the lock.
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key); err != nil {
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, true, nil
}
