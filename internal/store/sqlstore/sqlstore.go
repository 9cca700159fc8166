// Package sqlstore is the one SQL implementation of store.Store, over
// database/sql, that the sqlite and postgres stores share. What differs
// between the two databases is a Dialect each of them supplies: placeholder
// style, how a time is stored, transaction-scoped locks, error
// classification and a few SQL fragments. Everything else — every query
// the portal runs — is written once, here.
//
// Why a dialect type and not a query builder: the queries stay plain SQL a
// reviewer can read and paste into either database's shell, the
// differences are a short list in one place per store, and no dependency
// is added. ON CONFLICT … DO UPDATE/NOTHING, RETURNING, COUNT(*) FILTER and
// CAST are written the same way in both, so most statements need nothing
// from the dialect but its placeholders.
//
// Schemas and migrations stay in each store: the DDL differs (INTEGER
// milliseconds against timestamptz, triggers, collations) and each store
// records its version its own way.
package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Dialect is what one database does differently. Its zero value is not
// usable; the sqlite and postgres packages each define theirs.
type Dialect struct {
	// Name goes into error messages ("ping sqlite: …").
	Name string
	// Dollar placeholders: the shared SQL is written with ? (and ?N where
	// a parameter is used more than once); PostgreSQL wants $N.
	Dollar bool
	// Time is a time column's value: SQLite stores milliseconds since the
	// epoch, PostgreSQL a timestamptz (cut to the millisecond, so that
	// both give back the same instant).
	Time func(time.Time) any
	// Duration is the value compared with a difference of two time
	// columns (not_after - issued_at): milliseconds, or an interval.
	Duration func(time.Duration) any
	// TextList is a FROM item named alias, one row per string of a single
	// parameter, in a column named value; TextListArg makes that
	// parameter. SQLite: json_each of a JSON array; PostgreSQL: unnest of
	// a text[].
	TextList    func(alias string) string
	TextListArg func([]string) any
	// IndexHint follows a table name in FROM where the planner must be
	// told which index to use ("" where it needs no telling).
	IndexHint func(index string) string
	// SkipLocked ends the SELECT that picks a row to claim, so that
	// concurrent claimers pass over each other's rows ("" where one
	// writer claims at a time anyway).
	SkipLocked string
	// LockAudit, when set, is run first in every audit append: a
	// transaction-scoped lock that orders appends across processes. SQLite
	// leaves it empty: its single writer (BEGIN IMMEDIATE) orders them.
	LockAudit string
	// LockInventory, when set, waits for every transaction that changed
	// the inventory to end (and holds off new ones until this transaction
	// ends): a reconciliation claiming the inventory's change flag then
	// knows each change before the claim is committed, so its results will
	// show it. SQLite leaves it empty: its single writer already orders
	// the claim after every earlier write.
	LockInventory string
	// LockUser, when set, takes a transaction-scoped lock on one user (one
	// parameter: the name) before a reservation counts their places.
	LockUser string
	// IsUnique classifies a unique-constraint violation.
	IsUnique func(error) bool
	// DailyCounters: audit_daily holds the activity chart's counts, kept
	// with each append (SQLite); otherwise the chart groups the trail.
	DailyCounters bool
	// PrepareReads keeps prepared statements for the reads every request
	// makes. SQLite parses SQL slower than it runs these; pgx keeps its
	// own per-connection statement cache, and database/sql statements on
	// a pgx pool would be re-prepared on every use.
	PrepareReads bool
	// BeginRetry reports a failed BEGIN that never reached the database
	// (a connection a server restart had closed), which is safe to run
	// again on another connection. database/sql retries such failures of
	// statements by itself but not of BEGIN. nil: never.
	BeginRetry func(error) bool
}

// Querier is what the shared SQL runs on: the database, a transaction, or
// the SQLite writer's transaction.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Writer runs write transactions. SQLite hands them to its single writer
// goroutine, which commits them in groups; a nil Writer runs each in a
// transaction of its own (PostgreSQL).
type Writer interface {
	// Write runs fn in a transaction and returns once it is committed.
	Write(ctx context.Context, fn func(Querier) error) error
	// WriteDeferred is Write for records of something already done: the
	// commit may be held briefly to share it with other writes.
	WriteDeferred(ctx context.Context, fn func(Querier) error) error
	// WriteOverlapped is Write for a caller that does other work while it
	// waits (an issuance derives its .p12's keys): the commit may be held
	// for a fraction of a millisecond to share it with other writes.
	WriteOverlapped(ctx context.Context, fn func(Querier) error) error
	// WriteUnsynced is Write for what needs no flush of its own: it
	// returns once committed and visible to every connection, and is
	// durable once a later Write has returned (SQLite commits it without
	// an fsync; the next synchronous commit syncs the WAL, in order). Only
	// for rows whose loss in a crash of the machine is harmless: an
	// issuance's place under the cap, which frees itself by expiring.
	WriteUnsynced(ctx context.Context, fn func(Querier) error) error
}

// Store implements store.Store but for Locker and Close, which the
// databases do in ways that have nothing in common.
type Store struct {
	db *sql.DB
	d  *Dialect
	w  Writer

	placesTaken string // the reservation's count, for the dialect

	rebound  sync.Map // query text -> its $N form (PostgreSQL)
	prepared sync.Map // query text -> *sql.Stmt (PrepareReads)
}

// New returns the shared implementation on db. w nil: each write is a
// transaction of its own.
func New(db *sql.DB, d *Dialect, w Writer) *Store {
	s := &Store{db: db, d: d, w: w, placesTaken: PlacesTaken(d)}
	if w == nil {
		s.w = txWriter{s}
	}
	return s
}

// Close closes the prepared statements; the caller closes the database.
func (s *Store) Close() {
	s.prepared.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
}

// Ping checks the database answers and commits a write, as issuance
// would (store.Store.Ping): SELECT 1 still answers on a full disk (SQLite)
// or a read-only standby (PostgreSQL), where every audited write fails.
// The probe goes through the Writer like any audited write; SQLite's
// shares its group commit.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping %s: %w", s.d.Name, err)
	}
	at := s.d.Time(time.Now())
	err := s.write(ctx, func(x q) error {
		_, err := x.exec(ctx, `UPDATE store_probe SET at = ? WHERE id = 1`, at)
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s: write: %w", s.d.Name, err)
	}
	return nil
}

// q is a Querier that takes the shared SQL's placeholders.
type q struct {
	x Querier
	s *Store
}

func (x q) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return x.x.ExecContext(ctx, x.s.bind(query), args...)
}

func (x q) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return x.x.QueryContext(ctx, x.s.bind(query), args...)
}

func (x q) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return x.x.QueryRowContext(ctx, x.s.bind(query), args...)
}

// conn is the database itself, for statements outside a write transaction.
func (s *Store) conn() q { return q{s.db, s} }

// write and writeDeferred run fn through the store's Writer.
func (s *Store) write(ctx context.Context, fn func(q) error) error {
	return s.w.Write(ctx, func(x Querier) error { return fn(q{x, s}) })
}

// execWrite runs one statement through the store's Writer rather than on a
// connection of its own (see TouchSession); its result is the statement's.
func (s *Store) execWrite(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.write(ctx, func(x q) error {
		var err error
		res, err = x.exec(ctx, query, args...)
		return err
	})
	return res, err
}

func (s *Store) writeDeferred(ctx context.Context, fn func(q) error) error {
	return s.w.WriteDeferred(ctx, func(x Querier) error { return fn(q{x, s}) })
}

func (s *Store) writeOverlapped(ctx context.Context, fn func(q) error) error {
	return s.w.WriteOverlapped(ctx, func(x Querier) error { return fn(q{x, s}) })
}

func (s *Store) writeUnsynced(ctx context.Context, fn func(q) error) error {
	return s.w.WriteUnsynced(ctx, func(x Querier) error { return fn(q{x, s}) })
}

// inTx runs fn in a database/sql transaction of its own, outside any Writer.
func (s *Store) inTx(ctx context.Context, fn func(q) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil && s.d.BeginRetry != nil && s.d.BeginRetry(err) {
		tx, err = s.db.BeginTx(ctx, nil)
	}
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(q{tx, s}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

type txWriter struct{ s *Store }

func (w txWriter) Write(ctx context.Context, fn func(Querier) error) error {
	return w.s.inTx(ctx, func(x q) error { return fn(x.x) })
}

func (w txWriter) WriteDeferred(ctx context.Context, fn func(Querier) error) error {
	return w.Write(ctx, fn)
}

func (w txWriter) WriteOverlapped(ctx context.Context, fn func(Querier) error) error {
	return w.Write(ctx, fn)
}

// WriteUnsynced is a durable Write: PostgreSQL's replicas do not die with
// the database server, so a reservation lost in its crash could let an
// issuance under way pass the cap.
func (w txWriter) WriteUnsynced(ctx context.Context, fn func(Querier) error) error {
	return w.Write(ctx, fn)
}

// readRow runs a read every request makes, prepared where the dialect
// wants it.
func (s *Store) readRow(ctx context.Context, query string, args ...any) *sql.Row {
	if !s.d.PrepareReads {
		return s.conn().queryRow(ctx, query, args...)
	}
	st, ok := s.prepared.Load(query)
	if !ok {
		prep, err := s.db.PrepareContext(ctx, s.bind(query))
		if err != nil {
			// A *sql.Row cannot carry an error from outside database/sql;
			// the unprepared query reports the same error from Scan.
			return s.conn().queryRow(ctx, query, args...)
		}
		if prev, loaded := s.prepared.LoadOrStore(query, prep); loaded {
			prep.Close()
			st = prev
		} else {
			st = prep
		}
	}
	return st.(*sql.Stmt).QueryRowContext(ctx, args...)
}

// bind rewrites the shared SQL's placeholders for the dialect: ? stays
// for SQLite; for PostgreSQL ? becomes $1, $2, … in order and ?N becomes
// $N. Quoted text ('…', "…") is left alone. Each query text is rewritten
// once; the dynamic queries (filters) have a bounded number of shapes.
func (s *Store) bind(query string) string {
	if !s.d.Dollar {
		return query
	}
	if v, ok := s.rebound.Load(query); ok {
		return v.(string)
	}
	out := Rebind(query)
	s.rebound.Store(query, out)
	return out
}

// Rebind is bind's rewrite to $N placeholders.
func Rebind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
			b.WriteByte(c)
		case c == '\'' || c == '"':
			quote = c
			b.WriteByte(c)
		case c == '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			b.WriteByte('$')
			if j > i+1 {
				b.WriteString(query[i+1 : j])
				i = j - 1
			} else {
				n++
				b.WriteString(strconv.Itoa(n))
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// nullTime stores the zero time (not revoked, not sent) as NULL.
func (s *Store) nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return s.d.Time(t)
}

// timeCol scans a time column however the dialect stores it: milliseconds
// (SQLite) or a timestamp (PostgreSQL); NULL is the zero time.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMilli(v)
	case time.Time:
		*c.t = v
	default:
		return fmt.Errorf("time column holds %T", src)
	}
	return nil
}

type scanner interface{ Scan(...any) error }

// collect reads every row of rows with scan.
func collect[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// each hands every row of rows to fn, scanned, without keeping them. The
// database's errors are wrapped with what; fn's are returned as they are.
func each[T any](what string, rows *sql.Rows, err error, scan func(scanner) (T, error), fn func(T) error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
