package sqlite

import (
	"encoding/json"
	"errors"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/certportal/certportal/internal/store/sqlstore"
)

// dialect is what SQLite does differently from the shared SQL's other
// database (see sqlstore.Dialect).
var dialect = sqlstore.Dialect{
	Name: "sqlite",
	// Times are INTEGER milliseconds since the epoch.
	Time:     func(t time.Time) any { return t.UnixMilli() },
	Duration: func(d time.Duration) any { return d.Milliseconds() },
	TextList: func(alias string) string { return "json_each(?) AS " + alias },
	TextListArg: func(v []string) any {
		b, _ := json.Marshal(v) // strings always marshal
		return string(b)
	},
	// The planner picks a worse index for the reminder scan by itself.
	IndexHint: func(index string) string { return " INDEXED BY " + index },
	// No SkipLocked, LockAudit or LockUser: one writer at a time (BEGIN
	// IMMEDIATE in the writer goroutine) orders claims, appends and
	// reservations, in this process and any other on the same file.
	IsUnique: isUnique,
	// Grouping a month of a busy trail takes ~400 ms in pure-Go SQLite.
	DailyCounters: true,
	PrepareReads:  true,
}

// isUnique reports a UNIQUE or PRIMARY KEY constraint failure.
func isUnique(err error) bool {
	var e *msqlite.Error
	if errors.As(err, &e) {
		return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
