package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

const sessionColumns = `id_hash, data, created_at, last_seen, expires_at, moved_to`

func scanSession(r scanner) (*store.Session, error) {
	var x store.Session
	if err := r.Scan(&x.IDHash, &x.Data, timeCol{&x.CreatedAt}, timeCol{&x.LastSeen}, timeCol{&x.ExpiresAt}, &x.MovedTo); err != nil {
		return nil, err
	}
	return &x, nil
}

func (s *Store) SaveSession(ctx context.Context, x *store.Session) error {
	// A moved-away id (a forwarding row) is never written over.
	_, err := s.execWrite(ctx, `INSERT INTO sessions(id_hash, data, created_at, last_seen, expires_at) VALUES(?, ?, ?, ?, ?)
		ON CONFLICT(id_hash) DO UPDATE SET data = excluded.data, last_seen = excluded.last_seen
		WHERE sessions.moved_to IS NULL`,
		x.IDHash, x.Data, s.d.Time(x.CreatedAt), s.d.Time(x.LastSeen), s.d.Time(x.ExpiresAt))
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

func (s *Store) GetSession(ctx context.Context, idHash string) (*store.Session, error) {
	x, err := scanSession(s.readRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id_hash = ?`, idHash))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("get session: %w", err)
	}
	return x, nil
}

// TouchSession goes through the store's Writer, not a connection of its
// own: on SQLite a write beside the writer's back-to-back group commits
// waits for the write lock in SQLite's busy handler, which is not fair, and
// under 200 clients issuing (BenchmarkLoad, 60 s: every session is touched
// once a minute) it waited out busy_timeout and failed the request with
// "database is locked". In the writer it shares the next commit instead;
// the other session writes (save, update on a recheck, delete) go the same
// way for the same reason.
func (s *Store) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	if _, err := s.execWrite(ctx, `UPDATE sessions SET last_seen = ? WHERE id_hash = ? AND moved_to IS NULL`, s.d.Time(at), idHash); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	if _, err := s.execWrite(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (s *Store) UpdateSessionData(ctx context.Context, idHash string, data []byte, at time.Time) error {
	res, err := s.execWrite(ctx, `UPDATE sessions SET data = ?, last_seen = ? WHERE id_hash = ? AND moved_to IS NULL`, data, s.d.Time(at), idHash)
	if err != nil {
		return fmt.Errorf("update session: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update session: %w", err)
	} else if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// RenameSession moves the row to its new key and leaves at the old key a
// forwarding row, both in one transaction: no moment holds neither, and a
// reader of the old id finds either the session or where it went. A row
// already moved (a concurrent rename won) or deleted is ErrNotFound; the
// forwarding row holds no session data, so the sweep deletes it at its
// expires_at (the end of the grace) with no token to give back.
func (s *Store) RenameSession(ctx context.Context, oldHash, newHash string, data []byte, at time.Time, movedTo []byte, until time.Time) error {
	found := false
	err := s.write(ctx, func(x q) error {
		res, err := x.exec(ctx, `UPDATE sessions SET id_hash = ?, data = ?, last_seen = ? WHERE id_hash = ? AND moved_to IS NULL`,
			newHash, data, s.d.Time(at), oldHash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // not found: nothing written, the transaction is a no-op
		}
		found = true
		_, err = x.exec(ctx, `INSERT INTO sessions(`+sessionColumns+`) VALUES(?, ?, ?, ?, ?, ?)`,
			oldHash, []byte{}, s.d.Time(at), s.d.Time(at), s.d.Time(until), movedTo)
		return err
	})
	if err != nil {
		return fmt.Errorf("rename session: %w", err)
	}
	if !found {
		return store.ErrNotFound
	}
	return nil
}

func (s *Store) ExpiredSessions(ctx context.Context, now, idleBefore time.Time, after string, limit int) ([]*store.Session, error) {
	rows, err := s.conn().query(ctx, `SELECT `+sessionColumns+` FROM sessions
		WHERE (expires_at <= ? OR last_seen < ?) AND id_hash > ? ORDER BY id_hash LIMIT ?`,
		s.d.Time(now), s.d.Time(idleBefore), after, limit)
	out, err := collect(rows, err, scanSession)
	if err != nil {
		return nil, fmt.Errorf("expired sessions: %w", err)
	}
	return out, nil
}
