package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// takeLoginAttemptSQL decides and counts in one upsert, so concurrent takes
// on a key cannot both see room for the last attempt (SQLite: one writer;
// PostgreSQL: the row lock ON CONFLICT takes). Parameters: key, now and
// reset in milliseconds (bigint in both stores), limit. decision: 0
// allowed, 1 first refusal of the run, 2 refused again. A refusal leaves
// count and last_at alone: it must not extend the run. The CASTs tell
// PostgreSQL the parameters' types; SQLite takes them as they are.
const takeLoginAttemptSQL = `INSERT INTO login_attempts AS a (key, count, last_at, decision) VALUES(?1, 1, CAST(?2 AS BIGINT), 0)
	ON CONFLICT(key) DO UPDATE SET
		count = CASE WHEN a.last_at <= CAST(?2 AS BIGINT) - CAST(?3 AS BIGINT) THEN 1 WHEN a.count < CAST(?4 AS INTEGER) THEN a.count + 1 ELSE a.count END,
		last_at = CASE WHEN a.last_at <= CAST(?2 AS BIGINT) - CAST(?3 AS BIGINT) OR a.count < CAST(?4 AS INTEGER) THEN CAST(?2 AS BIGINT) ELSE a.last_at END,
		decision = CASE WHEN a.last_at <= CAST(?2 AS BIGINT) - CAST(?3 AS BIGINT) OR a.count < CAST(?4 AS INTEGER) THEN 0 WHEN a.decision = 0 THEN 1 ELSE 2 END
	RETURNING decision, last_at`

func (s *Store) TakeLoginAttempt(ctx context.Context, key string, limit int, reset time.Duration, now time.Time) (store.LoginAttemptVerdict, error) {
	var decision int
	var last int64
	if err := s.conn().queryRow(ctx, takeLoginAttemptSQL, key, now.UnixMilli(), reset.Milliseconds(), limit).Scan(&decision, &last); err != nil {
		return store.LoginAttemptVerdict{}, fmt.Errorf("take login attempt: %w", err)
	}
	if decision == 0 {
		return store.LoginAttemptVerdict{Allowed: true}, nil
	}
	return store.LoginAttemptVerdict{FirstRefusal: decision == 1, RetryAt: time.UnixMilli(last).Add(reset)}, nil
}

func (s *Store) RefundLoginAttempt(ctx context.Context, key string) error {
	if _, err := s.conn().exec(ctx, `UPDATE login_attempts SET count = count - 1 WHERE key = ? AND count > 0`, key); err != nil {
		return fmt.Errorf("refund login attempt: %w", err)
	}
	return nil
}

func (s *Store) ClearLoginAttempts(ctx context.Context, key string) error {
	if _, err := s.conn().exec(ctx, `DELETE FROM login_attempts WHERE key = ?`, key); err != nil {
		return fmt.Errorf("clear login attempts: %w", err)
	}
	return nil
}

func (s *Store) DeleteStaleLoginAttempts(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.conn().exec(ctx, `DELETE FROM login_attempts WHERE last_at < ?`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("delete stale login attempts: %w", err)
	}
	return res.RowsAffected()
}
