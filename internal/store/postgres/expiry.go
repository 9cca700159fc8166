package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// ExpiryStats counts from the partial indexes: active, expired and the next
// expiry from certificates_expiry (unrevoked rows, by not_after), revoked
// from certificates_revoked, and the expiring windows from one range of
// certificates_expiry, each row's renewal check a probe of
// certificates_active. No row leaves the database.
func (s *DB) ExpiryStats(ctx context.Context, at time.Time, within []time.Duration) (store.ExpiryStats, error) {
	st := store.ExpiryStats{Expiring: make([]int, len(within))}
	now := ms(at)
	var next *time.Time
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > $1),
		(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after <= $1),
		(SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL),
		(SELECT MIN(not_after) FROM certificates WHERE revoked_at IS NULL AND not_after > $1)`,
		now).Scan(&st.Active, &st.Expired, &st.Revoked, &next)
	if err != nil {
		return st, fmt.Errorf("expiry stats: %w", err)
	}
	if next != nil {
		st.NextExpiry = *next
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
		args = append(args, now.Add(w))
		sums[i] = fmt.Sprintf("COUNT(*) FILTER (WHERE c.not_after <= $%d)", i+2)
	}
	dest := make([]any, len(within))
	for i := range st.Expiring {
		dest[i] = &st.Expiring[i]
	}
	err = s.pool.QueryRow(ctx, `SELECT `+strings.Join(sums, ", ")+`
		FROM certificates c
		WHERE c.revoked_at IS NULL AND c.not_after > $1 AND c.not_after <= $`+fmt.Sprint(len(within)+1)+`
		AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.username = c.username AND n.revoked_at IS NULL
			AND n.not_after > $1 AND n.issued_at > c.issued_at)`, args...).Scan(dest...)
	if err != nil {
		return st, fmt.Errorf("expiry stats: %w", err)
	}
	return st, nil
}
