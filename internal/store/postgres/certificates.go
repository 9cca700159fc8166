package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certportal/certportal/internal/store"
)

const certColumns = `serial, username, subject, key_type, encryption, issued_by, issued_at, not_after,
	revoked_at, revoke_reason, revoked_by, ticket, label`

func (s *DB) InsertCertificate(ctx context.Context, c *store.Certificate) error {
	return insertCertificate(ctx, s.pool, c)
}

// insertCertificate runs on the pool or inside RecordIssuance's transaction.
func insertCertificate(ctx context.Context, q querier, c *store.Certificate) error {
	_, err := q.Exec(ctx, `INSERT INTO certificates(`+certColumns+`) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
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

func scanCert(r pgx.Row) (*store.Certificate, error) {
	var c store.Certificate
	var revoked *time.Time
	if err := r.Scan(&c.Serial, &c.Username, &c.Subject, &c.KeyType, &c.Encryption, &c.IssuedBy, &c.IssuedAt, &c.NotAfter,
		&revoked, &c.RevokeReason, &c.RevokedBy, &c.Ticket, &c.Label); err != nil {
		return nil, err
	}
	if revoked != nil {
		c.RevokedAt = *revoked
	}
	return &c, nil
}

func (s *DB) GetCertificate(ctx context.Context, serial string) (*store.Certificate, error) {
	c, err := scanCert(s.pool.QueryRow(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial = $1`, serial))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get certificate: %w", err)
	}
	return c, nil
}

func (s *DB) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*store.Certificate, error) {
	q := `SELECT ` + certColumns + ` FROM certificates WHERE true`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Username != "" {
		q += ` AND username = ` + arg(f.Username)
	}
	if !f.ActiveAt.IsZero() {
		q += ` AND revoked_at IS NULL AND not_after > ` + arg(ms(f.ActiveAt))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 500
	}
	q += ` ORDER BY issued_at DESC, serial LIMIT ` + arg(limit)
	rows, err := s.pool.Query(ctx, q, args...)
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
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM certificates WHERE username = $1 AND revoked_at IS NULL AND not_after > $2`,
		username, ms(at)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}

// reservationLock is the class (first key) of the two-key
// pg_advisory_xact_lock that serialises one user's reservations across
// replicas; the second key is hashtext(username). Two-key locks never
// collide with the one-key auditLock and migrationLock. Two users whose
// names hash alike only wait for each other.
const reservationLock int32 = 0x63617073 // "caps"

// placesTaken counts a user's places at $2: active certificates plus live
// reservations, less the active certificates that live reservations (or this
// one, $3) replace, each counted once. One statement, one snapshot: a
// RecordIssuance that commits meanwhile (reservation gone, certificate in)
// is seen whole or not at all.
const placesTaken = `SELECT
	(SELECT COUNT(*) FROM certificates WHERE username = $1 AND revoked_at IS NULL AND not_after > $2)
	+ (SELECT COUNT(*) FROM issuance_reservations WHERE username = $1 AND expires_at > $2)
	- (SELECT COUNT(*) FROM certificates WHERE username = $1 AND revoked_at IS NULL AND not_after > $2
		AND serial IN (SELECT replaces FROM issuance_reservations WHERE username = $1 AND expires_at > $2 AND replaces <> ''
			UNION SELECT $3::text))`

// ReserveIssuance holds the user's advisory lock for its transaction, so
// reservations for one user on every replica run one after another; the
// count then sees every earlier reservation committed.
func (s *DB) ReserveIssuance(ctx context.Context, r store.Reservation) (string, error) {
	id := rand.Text()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, reservationLock, r.Username); err != nil {
			return fmt.Errorf("reserve issuance: lock: %w", err)
		}
		at := ms(r.At)
		if _, err := tx.Exec(ctx, `DELETE FROM issuance_reservations WHERE username = $1 AND expires_at <= $2`, r.Username, at); err != nil {
			return fmt.Errorf("reserve issuance: %w", err)
		}
		var taken int
		if err := tx.QueryRow(ctx, placesTaken, r.Username, at, r.Replaces).Scan(&taken); err != nil {
			return fmt.Errorf("reserve issuance: %w", err)
		}
		if taken >= r.Max {
			return fmt.Errorf("%s holds %d of %d places: %w", r.Username, taken, r.Max, store.ErrCapReached)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO issuance_reservations(id, username, replaces, created_at, expires_at) VALUES($1,$2,$3,$4,$5)`,
			id, r.Username, r.Replaces, at, ms(r.Expires)); err != nil {
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
	return releaseReservation(ctx, s.pool, id)
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

func (s *DB) MarkRevoked(ctx context.Context, serial string, r store.Revocation) error {
	return markRevoked(ctx, s.pool, serial, r)
}

func markRevoked(ctx context.Context, q querier, serial string, r store.Revocation) error {
	// SET expressions see the row as it was, so every CASE tests the old
	// revoked_at. Two replicas revoking at once queue on the row lock and
	// the second re-reads the row the first wrote: the first record stays.
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

func (s *DB) SearchUsers(ctx context.Context, prefix string, at time.Time, limit int) ([]store.UserSummary, error) {
	if limit <= 0 {
		limit = 50
	}
	// starts_with, not LIKE, whose wildcards a user could type.
	rows, err := s.pool.Query(ctx, `SELECT username,
		COUNT(*) FILTER (WHERE revoked_at IS NULL AND not_after > $1), COUNT(*)
		FROM certificates WHERE starts_with(username, $2) GROUP BY username ORDER BY username LIMIT $3`,
		ms(at), prefix, limit)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	return out, nil
}

func (s *DB) CertificatesBySerials(ctx context.Context, serials []string) ([]*store.Certificate, error) {
	if len(serials) == 0 {
		return nil, nil
	}
	// One array parameter, one index lookup per element.
	out, err := s.queryCerts(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial = ANY($1)`, serials)
	if err != nil {
		return nil, fmt.Errorf("certificates by serials: %w", err)
	}
	return out, nil
}

func (s *DB) queryCerts(ctx context.Context, q string, args ...any) ([]*store.Certificate, error) {
	rows, err := s.pool.Query(ctx, q, args...)
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
