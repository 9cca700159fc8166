package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

const notifyColumns = `n.id, n.serial, n.username, n.threshold_s, n.channel, n.state, n.attempts, n.next_attempt, n.lease_until, n.lease, n.last_error, n.created_at, n.sent_at, c.not_after`

func scanNotification(r pgx.Row) (*store.Notification, error) {
	var n store.Notification
	var th int64
	var sent, notAfter *time.Time
	if err := r.Scan(&n.ID, &n.Serial, &n.Username, &th, &n.Channel, &n.State, &n.Attempts, &n.NextAttempt, &n.LeaseUntil,
		&n.Lease, &n.LastError, &n.CreatedAt, &sent, &notAfter); err != nil {
		return nil, err
	}
	n.Threshold = time.Duration(th) * time.Second
	if sent != nil {
		n.SentAt = *sent
	}
	if notAfter != nil {
		n.NotAfter = *notAfter
	}
	return &n, nil
}

// EnqueueReminders is one INSERT … SELECT for every channel at once; ON
// CONFLICT makes replicas enqueueing the same band at once harmless.
func (s *DB) EnqueueReminders(ctx context.Context, b store.Band, now time.Time) (int, error) {
	if len(b.Channels) == 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO notifications(serial, username, threshold_s, channel, state, attempts, next_attempt, created_at)
		SELECT c.serial, c.username, $1, ch.channel, 'pending', 0, $3, $3
		FROM certificates c CROSS JOIN unnest($2::text[]) AS ch(channel)
		WHERE c.revoked_at IS NULL AND c.not_after > $4 AND c.not_after <= $5
		AND c.not_after - c.issued_at > $6 * interval '1 millisecond'
		AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.username = c.username AND n.revoked_at IS NULL
			AND n.not_after > $7 AND n.issued_at > c.issued_at)
		ON CONFLICT (serial, threshold_s, channel) DO NOTHING`,
		int64(b.Threshold/time.Second), b.Channels, ms(now), ms(b.From), ms(b.To), b.MinValid.Milliseconds(), ms(b.At))
	if err != nil {
		return 0, fmt.Errorf("enqueue reminders: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

func (s *DB) SkipSuperseded(ctx context.Context) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE notifications SET state = 'skipped'
		WHERE state = 'pending' AND EXISTS (SELECT 1 FROM notifications m WHERE m.serial = notifications.serial
			AND m.channel = notifications.channel AND m.threshold_s < notifications.threshold_s)`)
	if err != nil {
		return 0, fmt.Errorf("skip superseded reminders: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// ClaimNotification: FOR UPDATE SKIP LOCKED lets replicas claim side by
// side, each passing over a row another is claiming; the state check in
// the UPDATE is re-read on the locked row, so a row claimed and committed
// meanwhile is not taken again.
func (s *DB) ClaimNotification(ctx context.Context, now, leaseUntil time.Time, lease string) (*store.Notification, error) {
	n, err := scanNotification(s.pool.QueryRow(ctx, `WITH claimed AS (
			UPDATE notifications SET state = 'sending', attempts = attempts + 1, lease_until = $1, lease = $2
			WHERE state = 'pending' AND id = (SELECT id FROM notifications WHERE state = 'pending' AND next_attempt <= $3
				ORDER BY next_attempt, id LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING *)
		SELECT `+notifyColumns+` FROM claimed n LEFT JOIN certificates c ON c.serial = n.serial`,
		ms(leaseUntil), lease, ms(now)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("claim notification: %w", err)
	}
	return n, nil
}

func (s *DB) FinishNotification(ctx context.Context, n *store.Notification, e *audit.Event) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE notifications SET state = $1, next_attempt = $2, last_error = $3, sent_at = $4, lease = ''
			WHERE id = $5 AND state = 'sending' AND lease = $6`,
			n.State, ms(n.NextAttempt), n.LastError, nullTime(n.SentAt), n.ID, n.Lease)
		if err != nil {
			return fmt.Errorf("finish notification: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("finish notification %d: no longer claimed under this lease: %w", n.ID, store.ErrConflict)
		}
		if e == nil {
			return nil
		}
		return appendAudit(ctx, tx, e)
	})
}

func (s *DB) ExpiredLeases(ctx context.Context, now time.Time, limit int) ([]*store.Notification, error) {
	return s.listNotifications(ctx, `SELECT `+notifyColumns+` FROM notifications n LEFT JOIN certificates c ON c.serial = n.serial
		WHERE n.state = 'sending' AND n.lease_until < $1 ORDER BY n.lease_until LIMIT $2`, ms(now), limit)
}

func (s *DB) ListNotifications(ctx context.Context, username string, limit int) ([]*store.Notification, error) {
	if limit <= 0 {
		limit = 50
	}
	return s.listNotifications(ctx, `SELECT `+notifyColumns+` FROM notifications n LEFT JOIN certificates c ON c.serial = n.serial
		WHERE n.username = $1 ORDER BY n.id DESC LIMIT $2`, username, limit)
}

func (s *DB) listNotifications(ctx context.Context, q string, args ...any) ([]*store.Notification, error) {
	rows, err := s.pool.Query(ctx, q, args...)
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
	return out, nil
}

func (s *DB) SetUserLanguage(ctx context.Context, username, lang string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO user_prefs(username, lang, updated_at) VALUES($1, $2, $3)
		ON CONFLICT (username) DO UPDATE SET lang = excluded.lang, updated_at = excluded.updated_at`, username, lang, ms(at))
	if err != nil {
		return fmt.Errorf("set user language: %w", err)
	}
	return nil
}

func (s *DB) UserLanguage(ctx context.Context, username string) (string, error) {
	var l string
	err := s.pool.QueryRow(ctx, `SELECT lang FROM user_prefs WHERE username = $1`, username).Scan(&l)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("user language: %w", err)
	}
	return l, nil
}
