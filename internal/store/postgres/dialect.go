package postgres

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certportal/certportal/internal/store/sqlstore"
)

// dialect is what PostgreSQL does differently from the shared SQL's other
// database (see sqlstore.Dialect).
var dialect = sqlstore.Dialect{
	Name:   "postgres",
	Dollar: true,
	// timestamptz keeps microseconds; SQLite keeps milliseconds, so both
	// give back the same instant.
	Time:        func(t time.Time) any { return ms(t) },
	Duration:    func(d time.Duration) any { return d }, // pgx sends an interval
	TextList:    func(alias string) string { return "unnest(CAST(? AS text[])) AS " + alias + "(value)" },
	TextListArg: func(v []string) any { return v },
	IndexHint:   func(string) string { return "" },
	// Replicas claim side by side, each passing over a row another is
	// claiming; the state check in the UPDATE is re-read on the locked row.
	SkipLocked: " FOR UPDATE SKIP LOCKED",
	// The audit chain's id is the previous maximum + 1 under this lock
	// ("certaudt" in ASCII), held until the transaction ends, so the next
	// append on any replica reads this event as the last one only once it
	// is committed. The append takes it last, after any inventory row
	// lock, so a holder never waits for anything else: no deadlock.
	LockAudit: `SELECT pg_advisory_xact_lock(7162256626579498100)`,
	// SHARE conflicts with the ROW EXCLUSIVE lock every INSERT, UPDATE and
	// DELETE on certificates holds until its transaction ends.
	LockInventory: `LOCK TABLE certificates IN SHARE MODE`,
	// Reservations for one user run one after another on every replica.
	// Class "caps" with hashtext(username): two-key locks never collide
	// with the one-key audit and migration locks; two users whose names
	// hash alike only wait for each other. The keys must not change: old
	// and new replicas share them during a rolling upgrade.
	LockUser: `SELECT pg_advisory_xact_lock(1667330163, hashtext(?))`,
	IsUnique: isUniqueViolation,
	// After a restart the first BEGIN on each connection the pool still
	// held fails before sending anything; the pool is emptied by then
	// (connLoss), so the second BEGIN gets a fresh connection.
	BeginRetry: pgconn.SafeToRetry,
}

// isUniqueViolation reports PostgreSQL's unique_violation (SQLSTATE 23505).
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// ms cuts t to the millisecond, what SQLite keeps, so both backends give
// back the same instant (timestamptz alone would keep microseconds).
func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond) }
