package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// notifyColumns reads a notification with its certificate's expiry
// (FROM notifications n LEFT JOIN certificates c).
const notifyColumns = `n.id, n.serial, n.username, n.threshold_s, n.channel, n.state, n.attempts, n.next_attempt, n.lease_until,
	n.lease, n.last_error, n.created_at, n.sent_at, c.not_after`

const notifyFrom = ` FROM notifications n LEFT JOIN certificates c ON c.serial = n.serial`

func scanNotification(r scanner) (*store.Notification, error) {
	var n store.Notification
	var th int64
	if err := r.Scan(&n.ID, &n.Serial, &n.Username, &th, &n.Channel, &n.State, &n.Attempts,
		timeCol{&n.NextAttempt}, timeCol{&n.LeaseUntil}, &n.Lease, &n.LastError, timeCol{&n.CreatedAt},
		timeCol{&n.SentAt}, timeCol{&n.NotAfter}); err != nil {
		return nil, err
	}
	n.Threshold = time.Duration(th) * time.Second
	return &n, nil
}

// EnqueueReminders is one INSERT … SELECT for every channel at once: the
// band is read from the covering index certificates_expiry, the renewal
// check from certificates_active, and existing rows are left alone by the
// unique key (so replicas enqueueing the same band at once are harmless).
// The inventory never leaves the database.
func (s *Store) EnqueueReminders(ctx context.Context, b store.Band, now time.Time) (int, error) {
	if len(b.Channels) == 0 {
		return 0, nil
	}
	var added int64
	err := s.write(ctx, func(x q) error {
		res, err := x.exec(ctx, `INSERT INTO notifications(serial, username, threshold_s, channel, state, attempts, next_attempt, created_at)
			SELECT c.serial, c.username, ?, ch.value, 'pending', 0, ?, ?
			FROM certificates c`+s.d.IndexHint("certificates_expiry")+`, `+s.d.TextList("ch")+`
			WHERE c.revoked_at IS NULL AND c.not_after > ? AND c.not_after <= ? AND c.not_after - c.issued_at > ?
			AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.username = c.username AND n.revoked_at IS NULL
				AND n.not_after > ? AND n.issued_at > c.issued_at)
			ON CONFLICT(serial, threshold_s, channel) DO NOTHING`,
			int64(b.Threshold/time.Second), s.d.Time(now), s.d.Time(now), s.d.TextListArg(b.Channels),
			s.d.Time(b.From), s.d.Time(b.To), s.d.Duration(b.MinValid), s.d.Time(b.At))
		if err != nil {
			return fmt.Errorf("enqueue reminders: %w", err)
		}
		added, err = res.RowsAffected()
		return err
	})
	return int(added), err
}

func (s *Store) SkipSuperseded(ctx context.Context) (int, error) {
	var n int64
	err := s.write(ctx, func(x q) error {
		res, err := x.exec(ctx, `UPDATE notifications SET state = 'skipped'
			WHERE state = 'pending' AND EXISTS (SELECT 1 FROM notifications m WHERE m.serial = notifications.serial
				AND m.channel = notifications.channel AND m.threshold_s < notifications.threshold_s)`)
		if err != nil {
			return fmt.Errorf("skip superseded reminders: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// ClaimNotification picks and marks the row in one UPDATE. SQLite's single
// writer runs one claim at a time, even across processes on one file (serve
// and a cron `notify --once`); PostgreSQL replicas claim side by side, the
// dialect's SKIP LOCKED passing over a row another is claiming, and the
// state check in the UPDATE, re-read on the locked row, refusing one
// claimed and committed meanwhile.
func (s *Store) ClaimNotification(ctx context.Context, now, leaseUntil time.Time, lease string) (*store.Notification, error) {
	var out *store.Notification
	err := s.write(ctx, func(x q) error {
		var id int64
		err := x.queryRow(ctx, `UPDATE notifications SET state = 'sending', attempts = attempts + 1, lease_until = ?, lease = ?
			WHERE state = 'pending' AND id = (SELECT id FROM notifications WHERE state = 'pending' AND next_attempt <= ?
				ORDER BY next_attempt, id LIMIT 1`+s.d.SkipLocked+`)
			RETURNING id`, s.d.Time(leaseUntil), lease, s.d.Time(now)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("claim notification: %w", err)
		}
		if out, err = scanNotification(x.queryRow(ctx, `SELECT `+notifyColumns+notifyFrom+` WHERE n.id = ?`, id)); err != nil {
			return fmt.Errorf("claim notification: %w", err)
		}
		return nil
	})
	return out, err
}

func (s *Store) FinishNotification(ctx context.Context, n *store.Notification, e *audit.Event) error {
	return s.write(ctx, func(x q) error {
		// attempts is written back: a row put back untried (quiet hours)
		// gives its claim's attempt back.
		res, err := x.exec(ctx, `UPDATE notifications SET state = ?, next_attempt = ?, attempts = ?, last_error = ?, sent_at = ?, lease = ''
			WHERE id = ? AND state = 'sending' AND lease = ?`,
			n.State, s.d.Time(n.NextAttempt), n.Attempts, n.LastError, s.nullTime(n.SentAt), n.ID, n.Lease)
		if err != nil {
			return fmt.Errorf("finish notification: %w", err)
		}
		if k, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("finish notification: %w", err)
		} else if k != 1 {
			return fmt.Errorf("finish notification %d: no longer claimed under this lease: %w", n.ID, store.ErrConflict)
		}
		if e == nil {
			return nil
		}
		return s.appendAudit(ctx, x, e)
	})
}

// DeferNotifications is one UPDATE over the due index: quiet hours move the
// held channels' rows to the window's end instead of claiming each one.
func (s *Store) DeferNotifications(ctx context.Context, channels []string, until time.Time) (int, error) {
	if len(channels) == 0 {
		return 0, nil
	}
	var n int64
	err := s.write(ctx, func(x q) error {
		res, err := x.exec(ctx, `UPDATE notifications SET next_attempt = ?
			WHERE state = 'pending' AND next_attempt < ? AND channel IN (SELECT ch.value FROM `+s.d.TextList("ch")+`)`,
			s.d.Time(until), s.d.Time(until), s.d.TextListArg(channels))
		if err != nil {
			return fmt.Errorf("defer notifications: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// RecordNotice appends e and the notice rows about it in one transaction;
// the rows' serial is only known once e has its id, so they follow the
// audit lock. They wait for nothing under it: the serial is new, no other
// transaction can hold or insert it.
func (s *Store) RecordNotice(ctx context.Context, e *audit.Event, kind time.Duration, channels []string, now time.Time) error {
	return s.write(ctx, func(x q) error {
		if err := s.appendAudit(ctx, x, e); err != nil {
			return err
		}
		for _, ch := range channels {
			if _, err := x.exec(ctx, `INSERT INTO notifications(serial, username, threshold_s, channel, state, attempts, next_attempt, created_at)
				VALUES(?, '', ?, ?, 'pending', 0, ?, ?) ON CONFLICT(serial, threshold_s, channel) DO NOTHING`,
				store.NoticeSerial(e.ID), int64(kind/time.Second), ch, s.d.Time(now), s.d.Time(now)); err != nil {
				return fmt.Errorf("record notice: %w", err)
			}
		}
		return nil
	})
}

func (s *Store) ExpiredLeases(ctx context.Context, now time.Time, limit int) ([]*store.Notification, error) {
	return s.listNotifications(ctx, `SELECT `+notifyColumns+notifyFrom+`
		WHERE n.state = 'sending' AND n.lease_until < ? ORDER BY n.lease_until LIMIT ?`, s.d.Time(now), limit)
}

func (s *Store) ListNotifications(ctx context.Context, username string, limit int) ([]*store.Notification, error) {
	if limit <= 0 {
		limit = 50
	}
	return s.listNotifications(ctx, `SELECT `+notifyColumns+notifyFrom+`
		WHERE n.username = ? ORDER BY n.id DESC LIMIT ?`, username, limit)
}

func (s *Store) listNotifications(ctx context.Context, query string, args ...any) ([]*store.Notification, error) {
	rows, err := s.conn().query(ctx, query, args...)
	out, err := collect(rows, err, scanNotification)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	return out, nil
}

func (s *Store) SetUserLanguage(ctx context.Context, username, lang string, at time.Time) error {
	return s.write(ctx, func(x q) error {
		_, err := x.exec(ctx, `INSERT INTO user_prefs(username, lang, updated_at) VALUES(?, ?, ?)
			ON CONFLICT(username) DO UPDATE SET lang = excluded.lang, updated_at = excluded.updated_at`, username, lang, s.d.Time(at))
		if err != nil {
			return fmt.Errorf("set user language: %w", err)
		}
		return nil
	})
}

func (s *Store) UserLanguage(ctx context.Context, username string) (string, error) {
	var l string
	err := s.conn().queryRow(ctx, `SELECT lang FROM user_prefs WHERE username = ?`, username).Scan(&l)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("user language: %w", err)
	}
	return l, nil
}
