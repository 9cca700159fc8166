package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/store"
)

const certColumns = `serial, username, subject, key_type, encryption, issued_by, issued_at, not_after,
	revoked_at, revoke_reason, revoked_by, ticket, label`

func (s *DB) InsertCertificate(ctx context.Context, c *store.Certificate) error {
	return insertCertificate(ctx, s.db, c)
}

func insertCertificate(ctx context.Context, x execer, c *store.Certificate) error {
	_, err := x.ExecContext(ctx, `INSERT INTO certificates(`+certColumns+`) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)`,
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

func scanCert(r scanner) (*store.Certificate, error) {
	var c store.Certificate
	var issued, notAfter int64
	var revoked sql.NullInt64
	if err := r.Scan(&c.Serial, &c.Username, &c.Subject, &c.KeyType, &c.Encryption, &c.IssuedBy, &issued, &notAfter,
		&revoked, &c.RevokeReason, &c.RevokedBy, &c.Ticket, &c.Label); err != nil {
		return nil, err
	}
	c.IssuedAt, c.NotAfter = time.UnixMilli(issued), time.UnixMilli(notAfter)
	if revoked.Valid {
		c.RevokedAt = time.UnixMilli(revoked.Int64)
	}
	return &c, nil
}

func (s *DB) GetCertificate(ctx context.Context, serial string) (*store.Certificate, error) {
	c, err := scanCert(s.db.QueryRowContext(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get certificate: %w", err)
	}
	return c, nil
}

func (s *DB) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*store.Certificate, error) {
	q := `SELECT ` + certColumns + ` FROM certificates WHERE 1=1`
	var args []any
	if f.Username != "" {
		q += ` AND username = ?`
		args = append(args, f.Username)
	}
	if !f.ActiveAt.IsZero() {
		q += ` AND revoked_at IS NULL AND not_after > ?`
		args = append(args, f.ActiveAt.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 500
	}
	q += ` ORDER BY issued_at DESC, serial LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	defer rows.Close()
	var out []*store.Certificate
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, fmt.Errorf("list certificates: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	return out, nil
}

func (s *DB) CountActive(ctx context.Context, username string, at time.Time) (int, error) {
	var n int
	st, err := s.prepared(ctx, `SELECT COUNT(*) FROM certificates WHERE username = ? AND revoked_at IS NULL AND not_after > ?`)
	if err == nil {
		err = st.QueryRowContext(ctx, username, at.UnixMilli()).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}

// placesTaken counts a user's places at ?2: active certificates plus live
// reservations, less the active certificates that live reservations (or this
// one, ?3) replace, each counted once.
const placesTaken = `SELECT
	(SELECT COUNT(*) FROM certificates WHERE username = ?1 AND revoked_at IS NULL AND not_after > ?2)
	+ (SELECT COUNT(*) FROM issuance_reservations WHERE username = ?1 AND expires_at > ?2)
	- (SELECT COUNT(*) FROM certificates WHERE username = ?1 AND revoked_at IS NULL AND not_after > ?2
		AND serial IN (SELECT replaces FROM issuance_reservations WHERE username = ?1 AND expires_at > ?2 AND replaces <> ''
			UNION SELECT ?3))`

// ReserveIssuance runs in the single writer, inside a BEGIN IMMEDIATE
// transaction: no other write, in this process or another one on the same
// file, runs between the count and the insert.
func (s *DB) ReserveIssuance(ctx context.Context, r store.Reservation) (string, error) {
	id := rand.Text()
	err := s.write(func(tx *wtx) error {
		at := r.At.UnixMilli()
		if _, err := tx.ExecContext(ctx, `DELETE FROM issuance_reservations WHERE username = ? AND expires_at <= ?`, r.Username, at); err != nil {
			return fmt.Errorf("reserve issuance: %w", err)
		}
		var taken int
		if err := tx.QueryRowContext(ctx, placesTaken, r.Username, at, r.Replaces).Scan(&taken); err != nil {
			return fmt.Errorf("reserve issuance: %w", err)
		}
		if taken >= r.Max {
			return fmt.Errorf("%s holds %d of %d places: %w", r.Username, taken, r.Max, store.ErrCapReached)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO issuance_reservations(id, username, replaces, created_at, expires_at) VALUES(?,?,?,?,?)`,
			id, r.Username, r.Replaces, at, r.Expires.UnixMilli()); err != nil {
			return fmt.Errorf("reserve issuance: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

func (s *DB) ReleaseReservation(ctx context.Context, id string) error {
	return s.write(func(tx *wtx) error { return releaseReservation(ctx, tx, id) })
}

func releaseReservation(ctx context.Context, x execer, id string) error {
	if id == "" {
		return nil
	}
	if _, err := x.ExecContext(ctx, `DELETE FROM issuance_reservations WHERE id = ?`, id); err != nil {
		return fmt.Errorf("release reservation: %w", err)
	}
	return nil
}

func (s *DB) MarkRevoked(ctx context.Context, serial string, r store.Revocation) error {
	return markRevoked(ctx, s.db, serial, r)
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

func (s *DB) SearchUsers(ctx context.Context, prefix string, at time.Time, limit int) ([]store.UserSummary, error) {
	if limit <= 0 {
		limit = 50
	}
	// Prefix match without LIKE, whose wildcards a user could type.
	rows, err := s.db.QueryContext(ctx, `SELECT username,
		SUM(CASE WHEN revoked_at IS NULL AND not_after > ? THEN 1 ELSE 0 END), COUNT(*)
		FROM certificates WHERE substr(username, 1, ?) = ? GROUP BY username ORDER BY username LIMIT ?`,
		at.UnixMilli(), len(prefix), prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	defer rows.Close()
	var out []store.UserSummary
	for rows.Next() {
		var u store.UserSummary
		if err := rows.Scan(&u.Username, &u.Active, &u.Total); err != nil {
			return nil, fmt.Errorf("search users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// serialBatch bounds one IN list: far below SQLite's 32,766 bound variables,
// and each batch is a primary-key lookup per serial.
const serialBatch = 500

func (s *DB) CertificatesBySerials(ctx context.Context, serials []string) ([]*store.Certificate, error) {
	var out []*store.Certificate
	for len(serials) > 0 {
		n := min(len(serials), serialBatch)
		batch := serials[:n]
		serials = serials[n:]
		args := make([]any, len(batch))
		for i, v := range batch {
			args[i] = v
		}
		q := `SELECT ` + certColumns + ` FROM certificates WHERE serial IN (?` + strings.Repeat(",?", len(batch)-1) + `)`
		found, err := s.queryCerts(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("certificates by serials: %w", err)
		}
		out = append(out, found...)
	}
	return out, nil
}

func (s *DB) queryCerts(ctx context.Context, q string, args ...any) ([]*store.Certificate, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*store.Certificate
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
