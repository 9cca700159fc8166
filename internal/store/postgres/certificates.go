package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// The inventory's transactional helpers, until audit moves to sqlstore.

func insertCertificate(ctx context.Context, q querier, c *store.Certificate) error {
	_, err := q.Exec(ctx, `INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after,
	revoked_at, revoke_reason, revoked_by, ticket, label) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
		c.Serial, c.Username, c.Subject, c.KeyType, c.Encryption, c.IssuedBy,
		ms(c.IssuedAt), ms(c.NotAfter), nullTime(c.RevokedAt), c.RevokeReason, c.RevokedBy, c.Ticket, c.Label)
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("insert certificate %s: %w", c.Serial, store.ErrConflict)
		}
		return fmt.Errorf("insert certificate: %w", err)
	}
	return nil
}

// nullTime stores the zero time ("not revoked") as NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = ms(t)
	return &t
}

func releaseReservation(ctx context.Context, q querier, id string) error {
	if id == "" {
		return nil
	}
	if _, err := q.Exec(ctx, `DELETE FROM issuance_reservations WHERE id = $1`, id); err != nil {
		return fmt.Errorf("release reservation: %w", err)
	}
	return nil
}

func markRevoked(ctx context.Context, q querier, serial string, r store.Revocation) error {
	tag, err := q.Exec(ctx, `UPDATE certificates SET revoked_at = COALESCE(revoked_at, $1),
		revoke_reason = CASE WHEN revoked_at IS NULL THEN $2 ELSE revoke_reason END,
		revoked_by = CASE WHEN revoked_at IS NULL THEN $3 ELSE revoked_by END,
		ticket = CASE WHEN revoked_at IS NULL THEN $4 ELSE ticket END
		WHERE serial = $5`, ms(r.At), r.Reason, r.By, r.Ticket, serial)
	if err != nil {
		return fmt.Errorf("mark revoked: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("mark revoked %s: %w", serial, store.ErrNotFound)
	}
	return nil
}
