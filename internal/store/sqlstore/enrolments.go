package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// Enrolment times are milliseconds in both stores (bigint in PostgreSQL).

func (s *Store) CreateEnrolment(ctx context.Context, e *store.Enrolment) error {
	err := s.inTx(ctx, func(x q) error {
		if _, err := x.exec(ctx, `DELETE FROM mfa_enrolments WHERE username = ?`, e.Username); err != nil {
			return err
		}
		_, err := x.exec(ctx, `INSERT INTO mfa_enrolments(token_hash, username, created_by, ticket, created_at, expires_at) VALUES(?, ?, ?, ?, ?, ?)`,
			e.TokenHash, e.Username, e.CreatedBy, e.Ticket, e.CreatedAt.UnixMilli(), e.ExpiresAt.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("create enrolment: %w", err)
	}
	return nil
}

func (s *Store) UseEnrolment(ctx context.Context, tokenHash, username string, now time.Time) (*store.Enrolment, error) {
	// DELETE ... RETURNING: the one statement that finds the link also
	// spends it, so two uses cannot both succeed.
	e := &store.Enrolment{}
	var created, expires int64
	err := s.conn().queryRow(ctx, `DELETE FROM mfa_enrolments WHERE token_hash = ? AND username = ? AND expires_at > ?
		RETURNING token_hash, username, created_by, ticket, created_at, expires_at`, tokenHash, username, now.UnixMilli()).
		Scan(&e.TokenHash, &e.Username, &e.CreatedBy, &e.Ticket, &created, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("use enrolment: %w", err)
	}
	e.CreatedAt, e.ExpiresAt = time.UnixMilli(created), time.UnixMilli(expires)
	return e, nil
}
