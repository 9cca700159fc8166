package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// takeLoginAttemptSQL decides and counts in one upsert, so concurrent takes
// on a key cannot both see room for the last attempt. Parameters: key, now
// and reset in milliseconds, limit. decision: 0 allowed, 1 first refusal
// of the run, 2 refused again. A refusal leaves count and last_at alone: it
// must not extend the run.
const takeLoginAttemptSQL = `INSERT INTO login_attempts(key, count, last_at, decision) VALUES(?1, 1, ?2, 0)
	ON CONFLICT(key) DO UPDATE SET
		count = CASE WHEN last_at <= ?2 - ?3 THEN 1 WHEN count < ?4 THEN count + 1 ELSE count END,
		last_at = CASE WHEN last_at <= ?2 - ?3 OR count < ?4 THEN ?2 ELSE last_at END,
		decision = CASE WHEN last_at <= ?2 - ?3 OR count < ?4 THEN 0 WHEN decision = 0 THEN 1 ELSE 2 END
	RETURNING decision, last_at`

func (s *DB) TakeLoginAttempt(ctx context.Context, key string, limit int, reset time.Duration, now time.Time) (store.LoginAttemptVerdict, error) {
	var decision int
	var last int64
	if err := s.db.QueryRowContext(ctx, takeLoginAttemptSQL, key, now.UnixMilli(), reset.Milliseconds(), limit).Scan(&decision, &last); err != nil {
		return store.LoginAttemptVerdict{}, fmt.Errorf("take login attempt: %w", err)
	}
	if decision == 0 {
		return store.LoginAttemptVerdict{Allowed: true}, nil
	}
	return store.LoginAttemptVerdict{FirstRefusal: decision == 1, RetryAt: time.UnixMilli(last).Add(reset)}, nil
}

func (s *DB) RefundLoginAttempt(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE login_attempts SET count = count - 1 WHERE key = ? AND count > 0`, key); err != nil {
		return fmt.Errorf("refund login attempt: %w", err)
	}
	return nil
}

func (s *DB) ClearLoginAttempts(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM login_attempts WHERE key = ?`, key); err != nil {
		return fmt.Errorf("clear login attempts: %w", err)
	}
	return nil
}

func (s *DB) DeleteStaleLoginAttempts(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM login_attempts WHERE last_at < ?`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("delete stale login attempts: %w", err)
	}
	return res.RowsAffected()
}
