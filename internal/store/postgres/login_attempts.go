package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// takeLoginAttemptSQL decides and counts in one upsert: the row lock
// ON CONFLICT takes serialises replicas taking the same key, so two cannot
// both see room for the last attempt. Parameters: key, now and reset in
// milliseconds, limit. decision: 0 allowed, 1 first refusal of the run,
// 2 refused again. A refusal leaves count and last_at alone: it must not
// extend the run. The same statement as SQLite's.
const takeLoginAttemptSQL = `INSERT INTO login_attempts AS a (key, count, last_at, decision) VALUES($1, 1, $2::bigint, 0)
	ON CONFLICT(key) DO UPDATE SET
		count = CASE WHEN a.last_at <= $2::bigint - $3::bigint THEN 1 WHEN a.count < $4::integer THEN a.count + 1 ELSE a.count END,
		last_at = CASE WHEN a.last_at <= $2::bigint - $3::bigint OR a.count < $4::integer THEN $2::bigint ELSE a.last_at END,
		decision = CASE WHEN a.last_at <= $2::bigint - $3::bigint OR a.count < $4::integer THEN 0 WHEN a.decision = 0 THEN 1 ELSE 2 END
	RETURNING decision, last_at`

func (s *DB) TakeLoginAttempt(ctx context.Context, key string, limit int, reset time.Duration, now time.Time) (store.LoginAttemptVerdict, error) {
	var decision int
	var last int64
	if err := s.pool.QueryRow(ctx, takeLoginAttemptSQL, key, now.UnixMilli(), reset.Milliseconds(), limit).Scan(&decision, &last); err != nil {
		return store.LoginAttemptVerdict{}, fmt.Errorf("take login attempt: %w", err)
	}
	if decision == 0 {
		return store.LoginAttemptVerdict{Allowed: true}, nil
	}
	return store.LoginAttemptVerdict{FirstRefusal: decision == 1, RetryAt: time.UnixMilli(last).Add(reset)}, nil
}

func (s *DB) RefundLoginAttempt(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE login_attempts SET count = count - 1 WHERE key = $1 AND count > 0`, key); err != nil {
		return fmt.Errorf("refund login attempt: %w", err)
	}
	return nil
}

func (s *DB) ClearLoginAttempts(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM login_attempts WHERE key = $1`, key); err != nil {
		return fmt.Errorf("clear login attempts: %w", err)
	}
	return nil
}

func (s *DB) DeleteStaleLoginAttempts(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM login_attempts WHERE last_at < $1`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("delete stale login attempts: %w", err)
	}
	return tag.RowsAffected(), nil
}
