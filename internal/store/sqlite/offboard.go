package sqlite

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ActiveUsers walks the certificates_active partial index: only unrevoked
// rows are in it, so the scan is over active users, not the inventory.
func (s *DB) ActiveUsers(ctx context.Context, at time.Time, afterUser string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT username FROM certificates
		WHERE revoked_at IS NULL AND not_after > ? AND username > ? ORDER BY username LIMIT ?`, at.UnixMilli(), afterUser, limit)
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
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(DISTINCT username) FROM certificates
		WHERE revoked_at IS NULL AND not_after > ?`, at.UnixMilli()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count active users: %w", err)
	}
	return n, nil
}

// locks are the in-process locks of every SQLite store: one process serves
// a SQLite file, so a lock there is a lock for the whole portal. They are
// keyed by the file, so two handles on one file (a test, or serve and a
// CLI run in one process) exclude each other too.
var locks sync.Map // path + "\x00" + name -> *sync.Mutex

func (s *DB) TryLock(ctx context.Context, name string) (func(), bool, error) {
	v, _ := locks.LoadOrStore(s.path+"\x00"+name, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	if !mu.TryLock() {
		return nil, false, nil
	}
	var once sync.Once
	return func() { once.Do(mu.Unlock) }, true, nil
}
