package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/certportal/certportal/internal/store"
)

const certColumns = `serial, username, subject, key_type, encryption, issued_by, issued_at, not_after,
	revoked_at, revoke_reason, revoked_by, ticket, label, key_origin`

func (s *Store) InsertCertificate(ctx context.Context, c *store.Certificate) error {
	return s.insertCertificate(ctx, s.conn(), c)
}

// insertCertificate runs on the database or inside RecordIssuance's transaction.
func (s *Store) insertCertificate(ctx context.Context, x q, c *store.Certificate) error {
	_, err := x.exec(ctx, `INSERT INTO certificates(`+certColumns+`) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		c.Serial, c.Username, c.Subject, c.KeyType, c.Encryption, c.IssuedBy,
		s.d.Time(c.IssuedAt), s.d.Time(c.NotAfter), s.nullTime(c.RevokedAt), c.RevokeReason, c.RevokedBy, c.Ticket, c.Label, keyOrigin(c))
	if err != nil {
		if s.d.IsUnique(err) {
			return fmt.Errorf("insert certificate %s: %w", c.Serial, store.ErrConflict)
		}
		return fmt.Errorf("insert certificate: %w", err)
	}
	return nil
}

// keyOrigin is the row's key origin; unset is the server path, as the
// column's default for rows older than it.
func keyOrigin(c *store.Certificate) string {
	if c.KeyOrigin == "" {
		return store.KeyOriginVault
	}
	return c.KeyOrigin
}

func scanCert(r scanner) (*store.Certificate, error) {
	var c store.Certificate
	if err := r.Scan(&c.Serial, &c.Username, &c.Subject, &c.KeyType, &c.Encryption, &c.IssuedBy,
		timeCol{&c.IssuedAt}, timeCol{&c.NotAfter}, timeCol{&c.RevokedAt},
		&c.RevokeReason, &c.RevokedBy, &c.Ticket, &c.Label, &c.KeyOrigin); err != nil {
		return nil, err
	}
	return &c, nil
}

func (s *Store) GetCertificate(ctx context.Context, serial string) (*store.Certificate, error) {
	c, err := scanCert(s.conn().queryRow(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial = ?`, serial))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("get certificate: %w", err)
	}
	return c, nil
}

func (s *Store) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*store.Certificate, error) {
	query := `SELECT ` + certColumns + ` FROM certificates WHERE 1=1`
	var args []any
	if f.Username != "" {
		query += ` AND username = ?`
		args = append(args, f.Username)
	}
	if !f.ActiveAt.IsZero() {
		query += ` AND revoked_at IS NULL AND not_after > ?`
		args = append(args, s.d.Time(f.ActiveAt))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 500
	}
	rows, err := s.conn().query(ctx, query+` ORDER BY issued_at DESC, serial LIMIT ?`, append(args, limit)...)
	out, err := collect(rows, err, scanCert)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	return out, nil
}

func (s *Store) CountActive(ctx context.Context, username string, at time.Time) (int, error) {
	var n int
	err := s.readRow(ctx, `SELECT COUNT(*) FROM certificates WHERE username = ? AND revoked_at IS NULL AND not_after > ?`,
		username, s.d.Time(at)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}

// PlacesTaken counts a user's places at ?2: active certificates plus live
// reservations, less the active certificates that live reservations (or this
// one, ?3) replace, each counted once. One statement, one snapshot: a
// RecordIssuance that commits meanwhile (reservation gone, certificate in)
// is seen whole or not at all.
//
// The replaced certificates are looked up by serial, the primary key
// (SQLite's automatic index for it; PostgreSQL's planner needs no hint):
// left to itself, SQLite walked the user's every active certificate and
// read each one's table row for its serial — with a few hundred active
// certificates a third of the writer's CPU per issuance. Exported for the
// stores' plan tests.
func PlacesTaken(d *Dialect) string {
	return `SELECT
	(SELECT COUNT(*) FROM certificates WHERE username = ?1 AND revoked_at IS NULL AND not_after > ?2)
	+ (SELECT COUNT(*) FROM issuance_reservations WHERE username = ?1 AND expires_at > ?2)
	- (SELECT COUNT(*) FROM certificates` + d.IndexHint("sqlite_autoindex_certificates_1") + `
		WHERE username = ?1 AND revoked_at IS NULL AND not_after > ?2
		AND serial IN (SELECT replaces FROM issuance_reservations WHERE username = ?1 AND expires_at > ?2 AND replaces <> ''
			UNION SELECT CAST(?3 AS TEXT)))`
}

// ReserveIssuance counts and takes a place in one write transaction,
// serialised per user: by the dialect's user lock across PostgreSQL
// replicas (the count then sees every earlier reservation committed), by
// SQLite's single writer (BEGIN IMMEDIATE) otherwise, so no other write,
// in this process or another on the same file, runs between the count and
// the insert.
func (s *Store) ReserveIssuance(ctx context.Context, r store.Reservation) (string, error) {
	id := rand.Text()
	// Unsynced: the issuance's record, which must be on disk before
	// anything is handed out, is synced after it (store.Writer).
	err := s.writeUnsynced(ctx, func(x q) error {
		if s.d.LockUser != "" {
			if _, err := x.exec(ctx, s.d.LockUser, r.Username); err != nil {
				return fmt.Errorf("reserve issuance: lock: %w", err)
			}
		}
		at := s.d.Time(r.At)
		if _, err := x.exec(ctx, `DELETE FROM issuance_reservations WHERE username = ? AND expires_at <= ?`, r.Username, at); err != nil {
			return fmt.Errorf("reserve issuance: %w", err)
		}
		var taken int
		if err := x.queryRow(ctx, s.placesTaken, r.Username, at, r.Replaces).Scan(&taken); err != nil {
			return fmt.Errorf("reserve issuance: %w", err)
		}
		if taken >= r.Max {
			return fmt.Errorf("%s holds %d of %d places: %w", r.Username, taken, r.Max, store.ErrCapReached)
		}
		if _, err := x.exec(ctx, `INSERT INTO issuance_reservations(id, username, replaces, created_at, expires_at) VALUES(?,?,?,?,?)`,
			id, r.Username, r.Replaces, at, s.d.Time(r.Expires)); err != nil {
			return fmt.Errorf("reserve issuance: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

func (s *Store) ReleaseReservation(ctx context.Context, id string) error {
	return s.writeUnsynced(ctx, func(x q) error { return releaseReservation(ctx, x, id) })
}

func releaseReservation(ctx context.Context, x q, id string) error {
	if id == "" {
		return nil
	}
	if _, err := x.exec(ctx, `DELETE FROM issuance_reservations WHERE id = ?`, id); err != nil {
		return fmt.Errorf("release reservation: %w", err)
	}
	return nil
}

func (s *Store) MarkRevoked(ctx context.Context, serial string, r store.Revocation) error {
	return s.markRevoked(ctx, s.conn(), serial, r)
}

func (s *Store) markRevoked(ctx context.Context, x q, serial string, r store.Revocation) error {
	// SET expressions see the row as it was, so every CASE tests the old
	// revoked_at. Two PostgreSQL replicas revoking at once queue on the row
	// lock and the second re-reads the row the first wrote: the first
	// record stays.
	res, err := x.exec(ctx, `UPDATE certificates SET revoked_at = COALESCE(revoked_at, ?),
		revoke_reason = CASE WHEN revoked_at IS NULL THEN ? ELSE revoke_reason END,
		revoked_by = CASE WHEN revoked_at IS NULL THEN ? ELSE revoked_by END,
		ticket = CASE WHEN revoked_at IS NULL THEN ? ELSE ticket END
		WHERE serial = ?`, s.d.Time(r.At), r.Reason, r.By, r.Ticket, serial)
	if err != nil {
		return fmt.Errorf("mark revoked: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("mark revoked: %w", err)
	} else if n == 0 {
		return fmt.Errorf("mark revoked %s: %w", serial, store.ErrNotFound)
	}
	return nil
}

// SearchUsers matches the prefix as a range of the username index —
// [prefix, prefixEnd(prefix)) in byte order, which both stores use for
// usernames — so a search reads the matching names only, and a prefix the
// user typed is literal (no LIKE wildcards).
func (s *Store) SearchUsers(ctx context.Context, prefix string, at time.Time, limit int) ([]store.UserSummary, error) {
	if limit <= 0 {
		limit = 50
	}
	cond, args := "username >= ?", []any{s.d.Time(at), prefix}
	if end, ok := prefixEnd(prefix); ok {
		cond += " AND username < ?"
		args = append(args, end)
	}
	rows, err := s.conn().query(ctx, `SELECT username,
		COUNT(*) FILTER (WHERE revoked_at IS NULL AND not_after > ?), COUNT(*)
		FROM certificates WHERE `+cond+` GROUP BY username ORDER BY username LIMIT ?`, append(args, limit)...)
	out, err := collect(rows, err, scanUserSummary)
	if err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	return out, nil
}

// prefixEnd is the least string above every string that starts with p, in
// byte order: p with its last character incremented, after dropping
// trailing characters that have no successor (U+10FFFF). UTF-8 keeps code
// point order bytewise, so it stays valid text (PostgreSQL refuses
// anything else). ok is false when every string at or above p starts
// with it (p empty, or made of U+10FFFF only).
func prefixEnd(p string) (string, bool) {
	for p != "" {
		r, size := utf8.DecodeLastRuneInString(p)
		last := p[len(p)-1]
		p = p[:len(p)-size]
		switch {
		case r == utf8.MaxRune:
			continue
		case r == 0xD7FF: // the next is a surrogate, never encoded
			return p + "\uE000", true
		case r == utf8.RuneError && size == 1:
			// Not UTF-8 (the portal checks text first; PostgreSQL would
			// refuse it anyway): the byte order still holds.
			if last == 0xFF {
				continue
			}
			return p + string([]byte{last + 1}), true
		}
		return p + string(r+1), true
	}
	return "", false
}

func scanUserSummary(r scanner) (store.UserSummary, error) {
	var u store.UserSummary
	err := r.Scan(&u.Username, &u.Active, &u.Total)
	return u, err
}

// serialBatch bounds one lookup: each batch is a primary-key lookup per
// serial, and one parameter however many serials it holds.
const serialBatch = 500

func (s *Store) CertificatesBySerials(ctx context.Context, serials []string) ([]*store.Certificate, error) {
	var out []*store.Certificate
	for len(serials) > 0 {
		n := min(len(serials), serialBatch)
		batch := serials[:n]
		serials = serials[n:]
		rows, err := s.conn().query(ctx, `SELECT `+certColumns+` FROM certificates
			WHERE serial IN (SELECT value FROM `+s.d.TextList("l")+`)`, s.d.TextListArg(batch))
		found, err := collect(rows, err, scanCert)
		if err != nil {
			return nil, fmt.Errorf("certificates by serials: %w", err)
		}
		out = append(out, found...)
	}
	return out, nil
}
