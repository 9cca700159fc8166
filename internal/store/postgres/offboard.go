package postgres

import (
	"context"
	"fmt"
	"time"
)

// TryLock takes a session advisory lock on a connection of its own, held
// until unlock: replicas sharing the database exclude each other, and a
// replica that dies mid-sweep releases the lock with its connection.
func (s *DB) TryLock(ctx context.Context, name string) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	key := lockKey(name)
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

// LockHeld reports whether any session holds the advisory lock TryLock
// takes for name, from pg_locks: it takes nothing, so it never makes a
// holder's TryLock fail. A bigint advisory key is in pg_locks as classid
// (its high 32 bits), objid (its low 32 bits) and objsubid 1.
func (s *DB) LockHeld(ctx context.Context, name string) (bool, error) {
	var held bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l, (SELECT hashtextextended($1, 0) AS k) h
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND l.classid::bigint = (h.k >> 32) & 4294967295 AND l.objid::bigint = h.k & 4294967295)`, lockKey(name)).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", name, err)
	}
	return held, nil
}

// lockKey is the text whose hashtextextended is the advisory lock's key
// for name: TryLock takes it, LockHeld looks for it.
func lockKey(name string) string { return "certportal:" + name }
