package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// ExpiryStats runs a handful of counts, each answered from an index: active
// and the next expiry from the unrevoked rows of certificates_expiry (range
// scans on not_after), revoked from certificates_revoked, and the
// expiring windows from one range of certificates_expiry, each row's renewal
// check a probe of certificates_active. The inventory never leaves SQLite.
func (s *DB) ExpiryStats(ctx context.Context, at time.Time, within []time.Duration) (store.ExpiryStats, error) {
	st := store.ExpiryStats{Expiring: make([]int, len(within))}
	now := at.UnixMilli()
	var next sql.NullInt64
	var total int
	// One statement, so one snapshot: expired is what is left of the total,
	// which SQLite counts from b-tree pages (a tenth of the time a range
	// scan over the expired rows takes, which grow without bound).
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM certificates),
		(SELECT COUNT(*) FROM certificates INDEXED BY certificates_expiry WHERE revoked_at IS NULL AND not_after > ?1),
		(SELECT COUNT(*) FROM certificates INDEXED BY certificates_revoked WHERE revoked_at IS NOT NULL),
		(SELECT MIN(not_after) FROM certificates INDEXED BY certificates_expiry WHERE revoked_at IS NULL AND not_after > ?1)`,
		now).Scan(&total, &st.Active, &st.Revoked, &next)
	if err != nil {
		return st, fmt.Errorf("expiry stats: %w", err)
	}
	st.Expired = total - st.Active - st.Revoked
	if next.Valid {
		st.NextExpiry = time.UnixMilli(next.Int64)
	}
	if len(within) == 0 {
		return st, nil
	}
	// One pass over the widest window counts every narrower one too.
	sums := make([]string, len(within))
	args := []any{now}
	for i, w := range within {
		if w <= 0 || (i > 0 && w < within[i-1]) {
			return st, fmt.Errorf("expiry stats: windows %v must be positive and ascending", within)
		}
		args = append(args, now+w.Milliseconds())
		sums[i] = fmt.Sprintf("COALESCE(SUM(c.not_after <= ?%d), 0)", i+2)
	}
	dest := make([]any, len(within))
	for i := range st.Expiring {
		dest[i] = &st.Expiring[i]
	}
	err = s.db.QueryRowContext(ctx, `SELECT `+strings.Join(sums, ", ")+`
		FROM certificates c INDEXED BY certificates_expiry
		WHERE c.revoked_at IS NULL AND c.not_after > ?1 AND c.not_after <= ?`+fmt.Sprint(len(within)+1)+`
		AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.username = c.username AND n.revoked_at IS NULL
			AND n.not_after > ?1 AND n.issued_at > c.issued_at)`, args...).Scan(dest...)
	if err != nil {
		return st, fmt.Errorf("expiry stats: %w", err)
	}
	return st, nil
}
