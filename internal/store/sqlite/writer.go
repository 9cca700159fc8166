package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
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
//
// An overlapped request (an issuance's record, whose caller derives the
// .p12's keys meanwhile, about a millisecond of CPU) may wait up to
// overlapHold for other writes to share its fsync: its caller is busy
// longer than that anyway, so nobody waits more, and with several users
// issuing at once the commits, and the WAL pages they write, per issuance
// fall. A group holds only while every urgent request in it is overlapped.
//
// An unsynced request (an issuance's place under the cap: its reservation
// and release) is committed — visible to every connection at once, so the
// cap holds — without an fsync of its own: a group of only such requests
// commits with synchronous=NORMAL. In WAL mode that differs from FULL only
// in the sync after the commit; the WAL is written in order, so the next
// FULL commit (the issuance's record, which nothing is handed out before)
// makes it durable too, and recovery never keeps a later commit without an
// earlier one. Lost to a power cut before that, a reservation is a place
// that frees itself (reservationTTL); the issuance it belonged to died with
// the machine and handed nothing out.
//
// The writer keeps one connection of its own, since synchronous is a
// setting of the connection, and runs BEGIN IMMEDIATE and COMMIT on it
// itself with statements prepared on it once.
type writer struct {
	reqs chan writeReq
	done chan struct{}

	mu     sync.RWMutex // held for reading while sending; Close takes it to close reqs
	closed bool

	commits  atomic.Int64 // commits attempted, for the benchmark
	unsynced atomic.Int64 // of which with synchronous=NORMAL, for the tests

	// conn is the writer's connection, nil until the first group (and
	// after one that found it broken); only the writer goroutine touches
	// it, its stmts and sync.
	conn *sql.Conn
	// stmts holds the writer's prepared statements by query text. The
	// same few statements run on every append, and parsing them each time
	// cost a fifth of the writer's CPU.
	stmts map[string]*sql.Stmt
	// synced is whether conn is at synchronous=FULL (false: NORMAL).
	synced bool
}

// wtx is the writer's open transaction: the statements of the requests
// of one group, on the writer's connection.
type wtx struct{ w *writer }

func (t *wtx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	st, ok := t.w.stmts[q]
	if !ok {
		var err error
		if st, err = t.w.conn.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
		t.w.stmts[q] = st
	}
	return st, nil
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
		return t.w.conn.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

type writeReq struct {
	fn         func(tx *wtx) error
	res        chan error
	deferred   bool
	overlapped bool // its caller works meanwhile: may wait overlapHold (see writer)
	unsynced   bool // needs no fsync of its own (see writer)
}

const (
	// maxGroup bounds a group so one commit never holds the lock for long.
	maxGroup = 64
	// deferWindow is how long a group of only deferred requests waits for
	// an urgent one before committing on its own.
	deferWindow = 100 * time.Millisecond
)

// overlapHold is how long a group of overlapped (and deferred) requests
// waits for more before committing: under the .p12 key derivation its
// caller runs meanwhile (about 1 ms of CPU).
var overlapHold = 500 * time.Microsecond

func (s *DB) startWriter() {
	s.w = &writer{reqs: make(chan writeReq), done: make(chan struct{}), stmts: map[string]*sql.Stmt{}}
	go s.runWriter()
}

func (s *DB) runWriter() {
	defer close(s.w.done)
	defer s.w.dropConn()
	open := true
	for open {
		first, ok := <-s.w.reqs
		if !ok {
			return
		}
		group := []writeReq{first}
		// urgent: some request must commit now; held: every urgent request
		// in the group is overlapped, so the group may wait overlapHold.
		urgent, held := !first.deferred, !first.deferred && first.overlapped
		var window <-chan time.Time
		var timer *time.Timer
	collect:
		for len(group) < maxGroup {
			if urgent && !held {
				// Take what is already queued, and go.
				select {
				case r, ok := <-s.w.reqs:
					if !ok {
						open = false
						break collect
					}
					group = append(group, r)
					urgent = urgent || !r.deferred
					held = held && (r.deferred || r.overlapped)
				default:
					break collect
				}
				continue
			}
			if timer == nil {
				wait := deferWindow
				if urgent {
					wait = overlapHold
				}
				timer = time.NewTimer(wait)
				window = timer.C
			}
			select {
			case r, ok := <-s.w.reqs:
				if !ok {
					open = false
					break collect
				}
				group = append(group, r)
				if !r.deferred && !urgent {
					// The first urgent request starts the shorter wait.
					urgent, held = true, r.overlapped
					if held {
						timer.Reset(overlapHold)
					}
				} else if !r.deferred {
					held = held && r.overlapped
				}
			case <-window:
				break collect
			}
		}
		if timer != nil {
			timer.Stop()
		}
		s.commitGroup(group)
	}
}

// dropConn closes the writer's statements and gives its connection back
// (closed, so a broken one is not reused).
func (w *writer) dropConn() {
	for q, st := range w.stmts {
		st.Close()
		delete(w.stmts, q)
	}
	if w.conn != nil {
		_ = w.conn.Raw(func(any) error { return driver.ErrBadConn }) // discard, never pool, the connection
		w.conn.Close()
		w.conn = nil
	}
}

// begin opens the group's transaction on the writer's connection, at
// synchronous=FULL when synced, NORMAL otherwise.
func (s *DB) begin(ctx context.Context, synced bool) error {
	w := s.w
	if w.conn == nil {
		c, err := s.db.Conn(ctx)
		if err != nil {
			return err
		}
		w.conn, w.synced = c, true // the DSN's synchronous(FULL)
	}
	if w.synced != synced {
		level := "FULL"
		if !synced {
			level = "NORMAL"
		}
		if _, err := w.conn.ExecContext(ctx, `PRAGMA synchronous = `+level); err != nil {
			w.dropConn() // its level is unknown now
			return fmt.Errorf("synchronous %s: %w", level, err)
		}
		w.synced = synced
	}
	tx := &wtx{w: w}
	if _, err := tx.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
			w.dropConn()
		}
		return err
	}
	return nil
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
	synced := false
	for _, r := range group {
		synced = synced || !r.unsynced
	}
	if err := s.begin(ctx, synced); err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	tx := &wtx{w: s.w}
	rollback := func() {
		if _, err := tx.ExecContext(ctx, `ROLLBACK`); err != nil {
			// A transaction SQLite has already rolled back (an I/O error
			// at COMMIT) says so; anything else leaves the connection in
			// a state nobody knows: the next group takes a new one.
			if !strings.Contains(err.Error(), "no transaction is active") {
				s.w.dropConn()
			}
		}
	}
	if len(group) == 1 {
		// Alone in its group, a request needs no savepoint: if it fails,
		// the whole transaction is its own and is rolled back.
		r := group[0]
		if err := r.fn(tx); err != nil {
			rollback()
			r.res <- err
			return
		}
		s.commit(ctx, tx, group, results, synced, rollback, fail)
		return
	}
	for i, r := range group {
		if _, err := tx.ExecContext(ctx, `SAVEPOINT req`); err != nil {
			rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		if err := r.fn(tx); err != nil {
			results[i] = err
			if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO req`); rerr != nil {
				rollback()
				fail(fmt.Errorf("rollback to savepoint: %w (after %v)", rerr, err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, `RELEASE req`); err != nil {
			rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	s.commit(ctx, tx, group, results, synced, rollback, fail)
}

// commit commits the group's transaction and answers its requests.
func (s *DB) commit(ctx context.Context, tx *wtx, group []writeReq, results []error, synced bool, rollback func(), fail func(error)) {
	s.w.commits.Add(1)
	if !synced {
		s.w.unsynced.Add(1)
	}
	if _, err := tx.ExecContext(ctx, `COMMIT`); err != nil {
		rollback()
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	for i, r := range group {
		r.res <- results[i]
	}
}

// write runs fn in the next group commit and returns its outcome.
func (s *DB) write(fn func(tx *wtx) error) error { return s.submit(writeReq{fn: fn}) }

// writeDeferred is write for records of things already done: the commit may
// wait up to deferWindow to share an fsync with other writes.
func (s *DB) writeDeferred(fn func(tx *wtx) error) error {
	return s.submit(writeReq{fn: fn, deferred: true})
}

// writeOverlapped is write for a caller that works meanwhile: the commit
// may wait up to overlapHold to share an fsync with other writes.
func (s *DB) writeOverlapped(fn func(tx *wtx) error) error {
	return s.submit(writeReq{fn: fn, overlapped: true})
}

// writeUnsynced is write for what needs no fsync of its own (see writer):
// it is committed, and durable with the next synchronous commit.
func (s *DB) writeUnsynced(fn func(tx *wtx) error) error {
	return s.submit(writeReq{fn: fn, unsynced: true})
}

func (s *DB) submit(r writeReq) error {
	res := make(chan error, 1)
	r.res = res
	s.w.mu.RLock()
	if s.w.closed {
		s.w.mu.RUnlock()
		return errors.New("sqlite store closed")
	}
	s.w.reqs <- r
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

func (w sqliteWriter) WriteOverlapped(_ context.Context, fn func(sqlstore.Querier) error) error {
	return w.s.writeOverlapped(func(tx *wtx) error { return fn(tx) })
}

func (w sqliteWriter) WriteUnsynced(_ context.Context, fn func(sqlstore.Querier) error) error {
	return w.s.writeUnsynced(func(tx *wtx) error { return fn(tx) })
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
