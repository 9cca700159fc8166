package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certportal/certportal/internal/store/sqlstore"
)

// Audited writes go through one writer goroutine that commits them in
// groups: with synchronous=FULL every commit is an fsync, and SQLite takes
// one writer at a time, so eight users issuing at once would otherwise queue
// behind eight fsyncs. Each request runs in its own SAVEPOINT, so one failing
// request (a duplicate serial, say) is rolled back alone; a failed COMMIT
// fails every request in the group. Callers wait for the commit: an event
// reported written is on disk.
//
// A deferred request (an event recording something already done, such as a
// finished download) may wait up to deferWindow for an urgent one to share
// its commit, so it rarely costs an fsync of its own. Its caller still waits
// for the commit and learns its outcome.
type writer struct {
	reqs chan writeReq
	done chan struct{}

	mu     sync.RWMutex // held for reading while sending; Close takes it to close reqs
	closed bool

	commits atomic.Int64 // commits attempted, for the benchmark

	// stmts holds the writer's prepared statements by query text; only the
	// writer goroutine touches it. The same few statements run on every
	// append, and parsing them each time cost a fifth of the writer's CPU.
	stmts map[string]*sql.Stmt
}

// wtx is a write transaction whose statements are prepared once and reused.
type wtx struct {
	*sql.Tx
	w  *writer
	db *sql.DB
}

func (t *wtx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	st, ok := t.w.stmts[q]
	if !ok {
		var err error
		if st, err = t.db.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
		t.w.stmts[q] = st
	}
	return t.Tx.StmtContext(ctx, st), nil
}

func (t *wtx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *wtx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *wtx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := t.stmt(ctx, q)
	if err != nil {
		// A *sql.Row cannot be built with an error outside database/sql;
		// the unprepared query reports the same error from Scan.
		return t.Tx.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

type writeReq struct {
	fn       func(tx *wtx) error
	res      chan error
	deferred bool
}

const (
	// maxGroup bounds a group so one commit never holds the lock for long.
	maxGroup = 64
	// deferWindow is how long a group of only deferred requests waits for
	// an urgent one before committing on its own.
	deferWindow = 100 * time.Millisecond
)

func (s *DB) startWriter() {
	s.w = &writer{reqs: make(chan writeReq), done: make(chan struct{}), stmts: map[string]*sql.Stmt{}}
	go s.runWriter()
}

func (s *DB) runWriter() {
	defer close(s.w.done)
	defer func() {
		for _, st := range s.w.stmts {
			st.Close()
		}
	}()
	open := true
	for open {
		first, ok := <-s.w.reqs
		if !ok {
			return
		}
		group := []writeReq{first}
		urgent := !first.deferred
		var window <-chan time.Time
	collect:
		for len(group) < maxGroup {
			if urgent {
				// Take what is already queued, and go.
				select {
				case r, ok := <-s.w.reqs:
					if !ok {
						open = false
						break collect
					}
					group = append(group, r)
					urgent = urgent || !r.deferred
				default:
					break collect
				}
				continue
			}
			if window == nil {
				window = time.After(deferWindow)
			}
			select {
			case r, ok := <-s.w.reqs:
				if !ok {
					open = false
					break collect
				}
				group = append(group, r)
				urgent = urgent || !r.deferred
			case <-window:
				break collect
			}
		}
		s.commitGroup(group)
	}
}

func (s *DB) commitGroup(group []writeReq) {
	// The requests' contexts are not used: a write a caller gave up on must
	// still end in a known state, and the caller waits for it anyway.
	ctx := context.Background()
	results := make([]error, len(group))
	fail := func(err error) {
		for _, r := range group {
			r.res <- err
		}
	}
	sqltx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	tx := &wtx{Tx: sqltx, w: s.w, db: s.db}
	for i, r := range group {
		if _, err := tx.ExecContext(ctx, `SAVEPOINT req`); err != nil {
			tx.Rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		if err := r.fn(tx); err != nil {
			results[i] = err
			if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO req`); rerr != nil {
				tx.Rollback()
				fail(fmt.Errorf("rollback to savepoint: %w (after %v)", rerr, err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, `RELEASE req`); err != nil {
			tx.Rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	s.w.commits.Add(1)
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	for i, r := range group {
		r.res <- results[i]
	}
}

// write runs fn in the next group commit and returns its outcome.
func (s *DB) write(fn func(tx *wtx) error) error { return s.submit(fn, false) }

// writeDeferred is write for records of things already done: the commit may
// wait up to deferWindow to share an fsync with other writes.
func (s *DB) writeDeferred(fn func(tx *wtx) error) error { return s.submit(fn, true) }

func (s *DB) submit(fn func(tx *wtx) error, deferred bool) error {
	res := make(chan error, 1)
	s.w.mu.RLock()
	if s.w.closed {
		s.w.mu.RUnlock()
		return errors.New("sqlite store closed")
	}
	s.w.reqs <- writeReq{fn: fn, res: res, deferred: deferred}
	s.w.mu.RUnlock()
	return <-res
}

// sqliteWriter hands the shared SQL's write transactions to the writer.
type sqliteWriter struct{ s *DB }

func (w sqliteWriter) Write(_ context.Context, fn func(sqlstore.Querier) error) error {
	return w.s.write(func(tx *wtx) error { return fn(tx) })
}

func (w sqliteWriter) WriteDeferred(_ context.Context, fn func(sqlstore.Querier) error) error {
	return w.s.writeDeferred(func(tx *wtx) error { return fn(tx) })
}

// stopWriter lets queued writes finish, then stops the writer.
func (s *DB) stopWriter() {
	s.w.mu.Lock()
	if s.w.closed {
		s.w.mu.Unlock()
		return
	}
	s.w.closed = true
	close(s.w.reqs)
	s.w.mu.Unlock()
	<-s.w.done
}
