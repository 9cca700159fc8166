package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

const notifyColumns = `id, serial, username, threshold_s, channel, state, attempts, next_attempt, lease_until, lease, last_error, created_at, sent_at`

func scanNotification(r scanner) (*store.Notification, error) {
	var n store.Notification
	var th, next, lease, created int64
	var sent sql.NullInt64
	if err := r.Scan(&n.ID, &n.Serial, &n.Username, &th, &n.Channel, &n.State, &n.Attempts, &next, &lease, &n.Lease,
		&n.LastError, &created, &sent); err != nil {
		return nil, err
	}
	n.Threshold = time.Duration(th) * time.Second
	n.NextAttempt, n.LeaseUntil, n.CreatedAt = time.UnixMilli(next), time.UnixMilli(lease), time.UnixMilli(created)
	if sent.Valid {
		n.SentAt = time.UnixMilli(sent.Int64)
	}
	return &n, nil
}

// EnqueueReminders is one INSERT … SELECT for every channel at once: the
// band is read from the covering index certificates_expiry, the renewal
// check from certificates_active, and existing rows are left alone by the
// unique key. The inventory never leaves SQLite.
func (s *DB) EnqueueReminders(ctx context.Context, b store.Band, now time.Time) (int, error) {
	if len(b.Channels) == 0 {
		return 0, nil
	}
	channels, err := json.Marshal(b.Channels)
	if err != nil {
		return 0, err
	}
	var added int64
	err = s.write(func(tx *wtx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO notifications(serial, username, threshold_s, channel, state, attempts, next_attempt, created_at)
			SELECT c.serial, c.username, ?, ch.value, 'pending', 0, ?, ?
			FROM certificates c INDEXED BY certificates_expiry, json_each(?) ch
			WHERE c.revoked_at IS NULL AND c.not_after > ? AND c.not_after <= ? AND c.not_after - c.issued_at > ?
			AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.username = c.username AND n.revoked_at IS NULL
				AND n.not_after > ? AND n.issued_at > c.issued_at)
			ON CONFLICT(serial, threshold_s, channel) DO NOTHING`,
			int64(b.Threshold/time.Second), now.UnixMilli(), now.UnixMilli(), string(channels),
			b.From.UnixMilli(), b.To.UnixMilli(), b.MinValid.Milliseconds(), b.At.UnixMilli())
		if err != nil {
			return fmt.Errorf("enqueue reminders: %w", err)
		}
		added, _ = res.RowsAffected()
		return nil
	})
	return int(added), err
}

func (s *DB) SkipSuperseded(ctx context.Context) (int, error) {
	var n int64
	err := s.write(func(tx *wtx) error {
		res, err := tx.ExecContext(ctx, `UPDATE notifications SET state = 'skipped'
			WHERE state = 'pending' AND EXISTS (SELECT 1 FROM notifications m WHERE m.serial = notifications.serial
				AND m.channel = notifications.channel AND m.threshold_s < notifications.threshold_s)`)
		if err != nil {
			return fmt.Errorf("skip superseded reminders: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}

// ClaimNotification: the UPDATE picks and marks the row in one statement
// under SQLite's single writer, so two processes on one file (serve and a
// cron `notify --once`) cannot both claim it.
func (s *DB) ClaimNotification(ctx context.Context, now, leaseUntil time.Time, lease string) (*store.Notification, error) {
	var out *store.Notification
	err := s.write(func(tx *wtx) error {
		n, err := scanNotification(tx.QueryRowContext(ctx, `UPDATE notifications SET state = 'sending', attempts = attempts + 1,
			lease_until = ?, lease = ?
			WHERE id = (SELECT id FROM notifications WHERE state = 'pending' AND next_attempt <= ? ORDER BY next_attempt, id LIMIT 1)
			RETURNING `+notifyColumns, leaseUntil.UnixMilli(), lease, now.UnixMilli()))
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("claim notification: %w", err)
		}
		var na int64
		if err := tx.QueryRowContext(ctx, `SELECT not_after FROM certificates WHERE serial = ?`, n.Serial).Scan(&na); err == nil {
			n.NotAfter = time.UnixMilli(na)
		}
		out = n
		return nil
	})
	return out, err
}

func (s *DB) FinishNotification(ctx context.Context, n *store.Notification, e *audit.Event) error {
	return s.write(func(tx *wtx) error {
		res, err := tx.ExecContext(ctx, `UPDATE notifications SET state = ?, next_attempt = ?, last_error = ?, sent_at = ?, lease = ''
			WHERE id = ? AND state = 'sending' AND lease = ?`,
			n.State, n.NextAttempt.UnixMilli(), n.LastError, nullTime(n.SentAt), n.ID, n.Lease)
		if err != nil {
			return fmt.Errorf("finish notification: %w", err)
		}
		if k, _ := res.RowsAffected(); k != 1 {
			return fmt.Errorf("finish notification %d: no longer claimed under this lease: %w", n.ID, store.ErrConflict)
		}
		if e == nil {
			return nil
		}
		return appendAudit(ctx, tx, e)
	})
}

func (s *DB) ExpiredLeases(ctx context.Context, now time.Time, limit int) ([]*store.Notification, error) {
	return s.listNotifications(ctx, `SELECT `+notifyColumns+` FROM notifications WHERE state = 'sending' AND lease_until < ? ORDER BY lease_until LIMIT ?`,
		now.UnixMilli(), limit)
}

func (s *DB) ListNotifications(ctx context.Context, username string, limit int) ([]*store.Notification, error) {
	if limit <= 0 {
		limit = 50
	}
	return s.listNotifications(ctx, `SELECT `+notifyColumns+` FROM notifications WHERE username = ? ORDER BY id DESC LIMIT ?`, username, limit)
}

func (s *DB) listNotifications(ctx context.Context, q string, args ...any) ([]*store.Notification, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	defer rows.Close()
	var out []*store.Notification
	for rows.Next() {
		n, err := scanNotification(rows)
		if err != nil {
			return nil, fmt.Errorf("list notifications: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	for _, n := range out {
		var na int64
		if err := s.db.QueryRowContext(ctx, `SELECT not_after FROM certificates WHERE serial = ?`, n.Serial).Scan(&na); err == nil {
			n.NotAfter = time.UnixMilli(na)
		}
	}
	return out, nil
}

func (s *DB) SetUserLanguage(ctx context.Context, username, lang string, at time.Time) error {
	return s.write(func(tx *wtx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO user_prefs(username, lang, updated_at) VALUES(?, ?, ?)
			ON CONFLICT(username) DO UPDATE SET lang = excluded.lang, updated_at = excluded.updated_at`, username, lang, at.UnixMilli())
		if err != nil {
			return fmt.Errorf("set user language: %w", err)
		}
		return nil
	})
}

func (s *DB) UserLanguage(ctx context.Context, username string) (string, error) {
	var l string
	err := s.db.QueryRowContext(ctx, `SELECT lang FROM user_prefs WHERE username = ?`, username).Scan(&l)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("user language: %w", err)
	}
	return l, nil
}
