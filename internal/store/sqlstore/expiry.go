package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// ExpiryStats is a handful of counts, each answered from an index or the
// day counts: active, expired and revoked as the inventory report counts
// them (certificate_days, inventory.go), the next expiry from the
// unrevoked rows of certificates_expiry, and the expiring windows from one
// range of certificates_expiry, each row's renewal check a probe of
// certificates_active. The inventory never leaves the database.
func (s *Store) ExpiryStats(ctx context.Context, at time.Time, within []time.Duration) (store.ExpiryStats, error) {
	st := store.ExpiryStats{Expiring: make([]int, len(within))}
	var unrevoked int
	// One statement, so one snapshot: the counts add up.
	err := s.conn().queryRow(ctx, `SELECT `+dayTotals+`, `+s.expiredBy(2)+`,
		(SELECT MIN(not_after) FROM certificates`+s.d.IndexHint("certificates_expiry")+` WHERE revoked_at IS NULL AND not_after > ?1)`,
		append([]any{s.d.Time(at)}, s.expiredByArgs(at)...)...).Scan(&unrevoked, &st.Revoked, &st.Expired, timeCol{&st.NextExpiry})
	if err != nil {
		return st, fmt.Errorf("expiry stats: %w", err)
	}
	st.Active = unrevoked - st.Expired
	if len(within) == 0 {
		return st, nil
	}
	// One pass over the widest window counts every narrower one too.
	counts := make([]string, len(within))
	args := []any{s.d.Time(at)}
	for i, w := range within {
		if w <= 0 || (i > 0 && w < within[i-1]) {
			return st, fmt.Errorf("expiry stats: windows %v must be positive and ascending", within)
		}
		args = append(args, s.d.Time(at.Add(w)))
		counts[i] = fmt.Sprintf("COUNT(*) FILTER (WHERE c.not_after <= ?%d)", i+2)
	}
	dest := make([]any, len(within))
	for i := range st.Expiring {
		dest[i] = &st.Expiring[i]
	}
	err = s.conn().queryRow(ctx, `SELECT `+strings.Join(counts, ", ")+`
		FROM certificates c`+s.d.IndexHint("certificates_expiry")+`
		WHERE c.revoked_at IS NULL AND c.not_after > ?1 AND c.not_after <= ?`+fmt.Sprint(len(within)+1)+`
		AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.username = c.username AND n.revoked_at IS NULL
			AND n.not_after > ?1 AND n.issued_at > c.issued_at)`, args...).Scan(dest...)
	if err != nil {
		return st, fmt.Errorf("expiry stats: %w", err)
	}
	return st, nil
}
