package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/store"
)

func (s *DB) CreateEnrolment(ctx context.Context, e *store.Enrolment) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create enrolment: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_enrolments WHERE username = ?`, e.Username); err != nil {
		return fmt.Errorf("create enrolment: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO mfa_enrolments(token_hash, username, created_by, ticket, created_at, expires_at) VALUES(?, ?, ?, ?, ?, ?)`,
		e.TokenHash, e.Username, e.CreatedBy, e.Ticket, e.CreatedAt.UnixMilli(), e.ExpiresAt.UnixMilli()); err != nil {
		return fmt.Errorf("create enrolment: %w", err)
	}
	return tx.Commit()
}

func (s *DB) UseEnrolment(ctx context.Context, tokenHash, username string, now time.Time) (*store.Enrolment, error) {
	// DELETE ... RETURNING: the one statement that finds the link also
	// spends it, so two uses cannot both succeed.
	e := &store.Enrolment{}
	var created, expires int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM mfa_enrolments WHERE token_hash = ? AND username = ? AND expires_at > ?
		RETURNING token_hash, username, created_by, ticket, created_at, expires_at`, tokenHash, username, now.UnixMilli()).
		Scan(&e.TokenHash, &e.Username, &e.CreatedBy, &e.Ticket, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("use enrolment: %w", err)
	}
	e.CreatedAt, e.ExpiresAt = time.UnixMilli(created), time.UnixMilli(expires)
	return e, nil
}
