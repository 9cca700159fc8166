package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// The inventory's transactional helpers, until audit moves to sqlstore.

func insertCertificate(ctx context.Context, x execer, c *store.Certificate) error {
	_, err := x.ExecContext(ctx, `INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after,
	revoked_at, revoke_reason, revoked_by, ticket, label) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		c.Serial, c.Username, c.Subject, c.KeyType, c.Encryption, c.IssuedBy,
		c.IssuedAt.UnixMilli(), c.NotAfter.UnixMilli(), nullTime(c.RevokedAt), c.RevokeReason, c.RevokedBy, c.Ticket, c.Label)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			return fmt.Errorf("insert certificate %s: %w", c.Serial, store.ErrConflict)
		}
		return fmt.Errorf("insert certificate: %w", err)
	}
	return nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

type scanner interface{ Scan(...any) error }

func releaseReservation(ctx context.Context, x execer, id string) error {
	if id == "" {
		return nil
	}
	if _, err := x.ExecContext(ctx, `DELETE FROM issuance_reservations WHERE id = ?`, id); err != nil {
		return fmt.Errorf("release reservation: %w", err)
	}
	return nil
}

func markRevoked(ctx context.Context, x execer, serial string, r store.Revocation) error {
	res, err := x.ExecContext(ctx, `UPDATE certificates SET revoked_at = COALESCE(revoked_at, ?),
		revoke_reason = CASE WHEN revoked_at IS NULL THEN ? ELSE revoke_reason END,
		revoked_by = CASE WHEN revoked_at IS NULL THEN ? ELSE revoked_by END,
		ticket = CASE WHEN revoked_at IS NULL THEN ? ELSE ticket END
		WHERE serial = ?`, r.At.UnixMilli(), r.Reason, r.By, r.Ticket, serial)
	if err != nil {
		return fmt.Errorf("mark revoked: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("mark revoked %s: %w", serial, store.ErrNotFound)
	}
	return nil
}
