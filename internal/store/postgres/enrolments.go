package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certportal/certportal/internal/store"
)

func (s *DB) CreateEnrolment(ctx context.Context, e *store.Enrolment) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("create enrolment: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `DELETE FROM mfa_enrolments WHERE username = $1`, e.Username); err != nil {
		return fmt.Errorf("create enrolment: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mfa_enrolments(token_hash, username, created_by, ticket, created_at, expires_at) VALUES($1, $2, $3, $4, $5, $6)`,
		e.TokenHash, e.Username, e.CreatedBy, e.Ticket, e.CreatedAt.UnixMilli(), e.ExpiresAt.UnixMilli()); err != nil {
		return fmt.Errorf("create enrolment: %w", err)
	}
	return tx.Commit(ctx)
}

func (s *DB) UseEnrolment(ctx context.Context, tokenHash, username string, now time.Time) (*store.Enrolment, error) {
	// DELETE ... RETURNING: the one statement that finds the link also
	// spends it, so two uses cannot both succeed.
	e := &store.Enrolment{}
	var created, expires int64
	err := s.pool.QueryRow(ctx, `DELETE FROM mfa_enrolments WHERE token_hash = $1 AND username = $2 AND expires_at > $3
		RETURNING token_hash, username, created_by, ticket, created_at, expires_at`, tokenHash, username, now.UnixMilli()).
		Scan(&e.TokenHash, &e.Username, &e.CreatedBy, &e.Ticket, &created, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("use enrolment: %w", err)
	}
	e.CreatedAt, e.ExpiresAt = time.UnixMilli(created), time.UnixMilli(expires)
	return e, nil
}
